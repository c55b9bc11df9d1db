"""Core CLI commands: run, check, config show, status."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from convmon.monitor.app import open_runtime
from convmon.monitor.cli import ConfigOption, app, console, err_console, load_or_exit
from convmon.monitor.daemon import StartupError, run_daemon
from convmon.monitor.http import status_document
from convmon.monitor.logs import setup_logging
from convmon.monitor.plugins import ROLES, Role
from convmon.monitor.redisconn import DataDirInUse, RedisSetupError

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and every rule file it references; exit 2 on errors."""
    loaded = load_or_exit(config, deep=True)
    console.print(
        f"[green]ok[/green]: {loaded.source.file} "
        f"({len(loaded.plugins)} plugins: {', '.join(p.name for p in loaded.plugins)})"
    )


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults, file and environment merged) with
    secrets redacted."""
    loaded = load_or_exit(config)
    merged: dict[str, Any] = loaded.core.model_dump(
        mode="json", by_alias=True, exclude={"collectors", "rules", "alerts"}
    )
    for plugin in loaded.plugins:
        cur = merged
        for part in plugin.section[:-1]:
            cur = cur.setdefault(part, {})
        cur[plugin.section[-1]] = loaded.sections[plugin.name].model_dump(
            mode="json", by_alias=True
        )
    typer.echo(yaml.safe_dump(merged, sort_keys=False), nl=False)


@app.command()
def run(
    config: ConfigOption = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", "-r", help="all, collectors, rules, alerts or api (repeatable)."),
    ] = None,
) -> None:
    """Run the daemon (all roles by default) until SIGTERM/SIGINT."""
    loaded = load_or_exit(config, deep=True)
    roles = _parse_roles(role or ["all"])
    setup_logging(loaded.core.log.level, loaded.core.log.format)
    try:
        code = asyncio.run(run_daemon(loaded, roles))
    except (StartupError, DataDirInUse) as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    except RedisSetupError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _parse_roles(values: list[str]) -> list[Role]:
    roles: list[Role] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part == "all":
                roles.extend(ROLES)
            elif part in ROLES:
                roles.append(part)  # type: ignore[arg-type,unused-ignore]
            else:
                err_console.print(
                    f"[red]error[/red]: --role: unknown role {part!r} "
                    f"(choose from all, {', '.join(ROLES)})"
                )
                raise typer.Exit(2)
    return sorted(set(roles), key=ROLES.index)


@app.command()
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON document.")] = False,
) -> None:
    """Show processes, collectors and active alerts (read from Redis)."""
    loaded = load_or_exit(config)

    async def fetch() -> dict[str, Any]:
        async with open_runtime(loaded, start_embedded=False) as rt:
            return await status_document(rt, [])

    try:
        doc = asyncio.run(fetch())
    except RedisSetupError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    render_status(doc)


def render_status(doc: dict[str, Any]) -> None:
    now = float(doc.get("time") or 0)
    procs = Table(title="Processes", title_justify="left")
    for col in ("instance", "state", "roles", "host", "pid", "up for", "last beat"):
        procs.add_column(col)
    for p in doc.get("processes", []):
        state = "[yellow]stopping[/yellow]" if p.get("stopping") == "1" else "running"
        procs.add_row(
            p.get("instance", ""), state, p.get("roles", ""), p.get("host", ""),
            str(p.get("pid", "")),
            _ago(now - float(p.get("started_at") or now)),
            _ago(now - float(p.get("updated_at") or now)) + " ago",
        )
    console.print(procs)
    comps = Table(title="Components", title_justify="left")
    for col in ("instance", "component", "role", "state", "for", "restarts", "last error"):
        comps.add_column(col)
    for p in doc.get("processes", []):
        for c in p.get("components", []):
            state = str(c.get("state", ""))
            colour = "green" if state == "running" else "red"
            comps.add_row(
                escape(str(p.get("instance", ""))), escape(str(c.get("name", ""))),
                str(c.get("role", "")), f"[{colour}]{state}[/{colour}]",
                _ago(now - float(c.get("since") or now)), str(c.get("restarts", 0)),
                escape(str(c.get("last_error") or "")),
            )
    console.print(comps)
    coll = Table(title="Collectors", title_justify="left")
    for col in ("collector", "state", "last event", "position", "lag", "reconnects", "error"):
        coll.add_column(col)
    for name, c in sorted(doc.get("collectors", {}).items()):
        state = "[green]connected[/green]" if c["connected"] else "[red]disconnected[/red]"
        last = c.get("last_event_at")
        coll.add_row(
            name, state, _ago(now - last) + " ago" if last else "-",
            str(c.get("last_position") or "-"),
            _ago(c["lag_s"]) if c.get("lag_s") is not None else "-",
            str(c.get("reconnects", 0)), escape(c.get("last_error") or ""),
        )
    console.print(coll)
    registry = doc.get("plugins", {}).get("bitcoin", {}).get("registry") or {}
    if registry.get("origin"):
        line = f"Pool list: {escape(str(registry['origin']))} ({registry.get('pools')} pools)"
        if registry.get("fallback"):
            since = registry.get("fallback_since")
            line = (f"[yellow]{line}, a FALLBACK[/yellow]"
                    + (f" for {_ago(now - float(since))}" if since else "")
                    + f" (configured: {escape(str(registry.get('configured', '?')))})")
        console.print(line)
    alerts = Table(title="Active alerts", title_justify="left")
    for col in ("state", "severity", "alert", "labels", "since", "summary"):
        alerts.add_column(col)
    for a in doc.get("alerts", []):
        labels = a.get("labels", {})
        shown = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
        colour = "red" if a.get("state") == "firing" else "yellow"
        alerts.add_row(
            f"[{colour}]{a.get('state')}[/{colour}]", labels.get("severity", ""),
            escape(labels.get("alertname", a.get("rule", ""))),
            escape(", ".join(f"{k}={v}" for k, v in sorted(shown.items()))),
            _ago(now - float(a.get("starts_at") or now)) + " ago",
            escape(a.get("annotations", {}).get("summary", "")),
        )
    console.print(alerts)


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


@app.command()
def demo(
    config: ConfigOption = None,
    speed: Annotated[
        float, typer.Option(help="Demo seconds per wall-clock second (the simulated clock).")
    ] = 1200.0,
    duration: Annotated[float, typer.Option(help="Wall-clock seconds to run.")] = 180.0,
    port: Annotated[
        int | None,
        typer.Option(help="Port for /metrics and the API (0: any; default: http.port, 9720)."),
    ] = None,
    live: Annotated[
        bool | None,
        typer.Option("--live/--no-live", help="Live terminal view (default: on a TTY)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the whole product offline on a SIMULATED scenario: local Esplora, Solana and
    exchange servers (and anvil when installed), embedded Redis, the default rule pack and
    a console receiver. Prints which alerts fired and resolved."""
    from convmon.sim.demo import print_summary, run_demo

    load_or_exit(config, deep=True)
    show_live = console.is_terminal if live is None else live
    setup_logging("WARNING", "console" if show_live else "auto")
    try:
        result = asyncio.run(
            run_demo(config, speed=speed, duration=duration, port=port, live=show_live)
        )
    except RedisSetupError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    print_summary(result, as_json)


dead_app = typer.Typer(
    help="Entries that failed too often: list them, put them back once fixed.",
    no_args_is_help=True,
)
app.add_typer(dead_app, name="deadletters")
StreamOption = Annotated[
    str, typer.Option("--stream", "-s", help="events (the bus) or alerts (the outbox).")
]


def _check_stream(name: str) -> None:
    if name not in ("events", "alerts"):
        err_console.print(f"[red]error[/red]: --stream: choose events or alerts, not {name!r}")
        raise typer.Exit(2)


@dead_app.command("list")
def deadletters_list(config: ConfigOption = None, stream: StreamOption = "events") -> None:
    """Show dead-lettered entries with why and how often they failed."""
    from convmon.monitor.deadletters import list_dead

    _check_stream(stream)
    loaded = load_or_exit(config)

    async def fetch() -> Any:
        async with open_runtime(loaded, start_embedded=False) as rt:
            return await list_dead(rt.redis, rt.keys, stream,
                                   shards=loaded.core.bus.shards)

    table = Table(title=f"Dead letters ({stream})", title_justify="left")
    for col in ("dead id", "item", "kind", "group", "reason", "deliveries"):
        table.add_column(col)
    for d in _run_redis(fetch):
        table.add_row(d.dead_id, escape(d.item_id), d.kind, d.group, d.reason,
                      str(d.deliveries))
    console.print(table)


@dead_app.command("redrive")
def deadletters_redrive(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead ids (default: all).")] = None,
    config: ConfigOption = None,
    stream: StreamOption = "events",
) -> None:
    """Append dead entries to their stream again (consumers are idempotent)."""
    from convmon.monitor.deadletters import redrive

    _check_stream(stream)
    loaded = load_or_exit(config)

    async def move() -> int:
        async with open_runtime(loaded, start_embedded=False) as rt:
            return await redrive(rt.redis, rt.keys, stream, ids or None,
                                 shards=loaded.core.bus.shards)

    console.print(f"redriven: {_run_redis(move)}")


def _run_redis(factory: Any) -> Any:
    try:
        return asyncio.run(factory())
    except RedisSetupError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


bus_app = typer.Typer(
    help="The event bus: change its shards (bus.shards, bus.family_shards).",
    no_args_is_help=True,
)
app.add_typer(bus_app, name="bus")


@bus_app.command("reshard")
def bus_reshard(
    config: ConfigOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Go on while processes with the collectors or rules "
                     "role run (e.g. rules workers on the previous settings left to drain "
                     "the old shards; the collectors must be stopped)."),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.0, help="Seconds to wait for the consumer groups "
                     "of the old shards to drain (and for stopping processes to go)."),
    ] = 60.0,
) -> None:
    """Move the event bus to the configured bus.shards and bus.family_shards.

    Waits until the consumer groups have drained the old shards, copies the dedupe markers
    of every family that moves to its new shard, creates the consumer groups on the new
    shards and records the layout, after which daemons with these settings start. Run it
    with the collectors and rules workers stopped; safe to run again (an interrupted run
    is finished by the next). Exit 2 when it must not run now, 1 when the old shards did
    not drain in time."""
    from convmon.monitor.buslayout import BusLayout
    from convmon.monitor.reshard import NotDrained, ReshardRefused, reshard

    loaded = load_or_exit(config)
    layout = BusLayout.of(loaded.core.bus)

    def say(text: str) -> None:
        console.print(escape(text), highlight=False)

    async def move() -> Any:
        # The configured Redis, or this data dir's embedded one: started if no daemon
        # runs (a stopped deployment is what this is for), never another daemon's.
        try:
            async with open_runtime(loaded, start_embedded=True) as rt:
                return await reshard(rt.redis, rt.keys, layout, force=force,
                                     timeout_s=timeout, progress=say)
        except DataDirInUse:
            async with open_runtime(loaded, start_embedded=False,
                                    require_daemon=False) as rt:
                return await reshard(rt.redis, rt.keys, layout, force=force,
                                     timeout_s=timeout, progress=say)

    try:
        report = _run_redis(move)
    except ReshardRefused as exc:
        err_console.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except NotDrained as exc:
        err_console.print(
            f"[red]error[/red]: the consumer groups of the old shards did not drain within "
            f"{timeout:g} s; left:", highlight=False)
        for left in exc.left:
            err_console.print(f"  {escape(left.describe())}", highlight=False)
        err_console.print(
            "Let the rules workers drain them on the previous bus settings (with the "
            "collectors stopped), then stop them and run this again, or run it with "
            "--force while they drain. A group no process reads any more can be removed "
            "with XGROUP DESTROY.", highlight=False)
        raise typer.Exit(1) from None
    for stream, length in sorted(report.stranded_dead_letters.items()):
        err_console.print(
            f"[yellow]warning[/yellow]: {escape(stream)} keeps {length} dead letters that "
            f"`convmon deadletters` no longer reads (bus.shards is now {layout.shards})",
            highlight=False)
    if report.changed and report.other_processes:
        err_console.print(
            "[yellow]warning[/yellow]: restart "
            f"{escape(', '.join(report.other_processes))}: they still run with the "
            "previous bus settings", highlight=False)
    if report.changed:
        console.print(f"[green]ok[/green]: the event bus is laid out with "
                      f"{escape(layout.describe())}", highlight=False)
