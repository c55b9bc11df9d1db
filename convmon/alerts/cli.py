"""CLI: ``convmon alerts list|test`` and ``convmon silence add|list|expire``."""

from __future__ import annotations

import getpass
import re
import time
from datetime import datetime
from typing import Annotated

import aiohttp
import typer
from rich.table import Table

from convmon.monitor.alerting import AlertTransition, alert_fingerprint, decode_transition
from convmon.monitor.app import open_runtime
from convmon.monitor.cli import ConfigOption, console, err_console, load_or_exit, run_async

from .config import AlertsConfig
from .errors import DeliveryError, DurationError
from .notification import Notification, format_time
from .receivers import build_receiver
from .silences import SilenceStore, check_duration, check_timestamp

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` → seconds; raises `DurationError`."""
    parsed = _DURATION.match(text.strip())
    if parsed is None:
        raise DurationError(f"invalid duration {text!r} (use e.g. 30m, 2h, 1d)")
    return float(parsed.group(1)) * _UNITS[parsed.group(2)]


def sample_notification(receiver: str, now: float) -> Notification:
    labels = {"alertname": "ConvmonTestNotification", "severity": "info",
              "pool": "example-pool"}
    alert = AlertTransition(
        id=f"{alert_fingerprint(labels)}:1", fingerprint=alert_fingerprint(labels), seq=1,
        rule="ConvmonTestNotification", state="firing", labels=labels,
        annotations={"summary": "Test notification from convmon",
                     "description": "If you can read this, the receiver works."},
        value=1.0, starts_at=now, evaluated_at=now,
    )
    return Notification(receiver=receiver, group_key="test", group_labels={},
                        firing=[alert], resolved=[], version=0, sent_at=now)


def list_alerts(config: ConfigOption = None) -> None:
    """Pending and firing alerts."""
    loaded = load_or_exit(config)

    async def read_active() -> list[AlertTransition]:
        async with open_runtime(loaded) as runtime:
            stored = await runtime.redis.hvals(runtime.keys.active_alerts)
            return [decode_transition(value) for value in stored]

    alerts = run_async(read_active)
    table = Table("state", "alert", "severity", "since", "labels", "summary")
    for alert in sorted(alerts, key=lambda a: (a.state, a.rule, a.starts_at)):
        labels = ", ".join(f"{name}={value}" for name, value in sorted(alert.labels.items())
                           if name not in ("alertname", "severity"))
        table.add_row(alert.state, alert.labels.get("alertname", alert.rule),
                      alert.labels.get("severity", ""), format_time(alert.starts_at), labels,
                      alert.annotations.get("summary", ""))
    console.print(table)


def send_test_notification(
    receiver: Annotated[str, typer.Option("--receiver", "-r", help="Receiver name.")],
    config: ConfigOption = None,
) -> None:
    """Send a sample notification to one receiver (no dedupe, no retries)."""
    loaded = load_or_exit(config)
    alerts_config: AlertsConfig = loaded.section("alerts")
    try:
        receiver_config = alerts_config.receiver(receiver)
    except KeyError:
        err_console.print(f"[red]error[/red]: no receiver named {receiver!r}")
        raise typer.Exit(2) from None

    async def send_sample() -> None:
        async with aiohttp.ClientSession() as session:
            sample = sample_notification(receiver, time.time())
            await build_receiver(receiver_config, session).send(sample)

    try:
        run_async(send_sample)
    except DeliveryError as exc:
        err_console.print(f"[red]failed[/red]: {receiver}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]sent[/green] a test notification to {receiver}")


def silence_add(
    matcher: Annotated[list[str], typer.Argument(help="Matchers: name=value, !=, =~, !~")],
    duration: Annotated[
        str, typer.Option("--duration", "-d", help="How long it mutes, e.g. 30m, 2h, 1d.")
    ] = "1h",
    end: Annotated[
        str | None, typer.Option("--end", help="ISO end time (instead of --duration).")
    ] = None,
    author: Annotated[
        str | None, typer.Option("--author", "-a", help="Who adds it (default: the login name).")
    ] = None,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    config: ConfigOption = None,
) -> None:
    """Add a silence."""
    loaded = load_or_exit(config)
    now = time.time()
    try:
        if end:
            ends = check_timestamp("--end", datetime.fromisoformat(end).timestamp())
        else:
            ends = now + check_duration("--duration", parse_duration(duration))
    except (ValueError, OverflowError) as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None

    async def add() -> str:
        async with open_runtime(loaded) as runtime:
            silence = await SilenceStore(runtime.redis, runtime.keys,
                                         registry=runtime.metrics).add(
                matcher, now, ends, author or getpass.getuser(), comment, now)
            return silence.id

    try:
        silence_id = run_async(add)
    except ValueError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    console.print(silence_id)


def silence_list(
    all_: Annotated[bool, typer.Option("--all", help="Include expired.")] = False,
    config: ConfigOption = None,
) -> None:
    """List silences."""
    loaded = load_or_exit(config)
    now = time.time()

    async def rows() -> list[tuple[str, str, str, str, str, str, str]]:
        async with open_runtime(loaded) as runtime:
            found = await SilenceStore(runtime.redis, runtime.keys,
                                       registry=runtime.metrics).all(now)
        return [(silence.id, silence.state(now), " ".join(silence.matchers),
                 format_time(silence.starts_at), format_time(silence.ends_at), silence.author,
                 silence.comment)
                for silence in found if all_ or silence.state(now) != "expired"]

    table = Table("id", "state", "matchers", "starts", "ends", "author", "comment")
    for row in run_async(rows):
        table.add_row(*row)
    console.print(table)


def silence_expire(silence_id: str, config: ConfigOption = None) -> None:
    """Expire a silence now."""
    loaded = load_or_exit(config)

    async def expire() -> bool:
        async with open_runtime(loaded) as runtime:
            store = SilenceStore(runtime.redis, runtime.keys, registry=runtime.metrics)
            return await store.expire(silence_id, time.time())

    if not run_async(expire):
        err_console.print(f"[red]error[/red]: no silence {silence_id}")
        raise typer.Exit(1)
    console.print(f"expired {silence_id}")


def register_cli(app: typer.Typer) -> None:
    """Add ``convmon alerts list|test`` and ``convmon silence add|list|expire`` to ``app``."""
    alerts_app = typer.Typer(help="Inspect alerts and test receivers.", no_args_is_help=True)
    silence_app = typer.Typer(help="Mute alerts for a while.", no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(silence_app, name="silence")
    alerts_app.command("list")(list_alerts)
    alerts_app.command("test")(send_test_notification)
    silence_app.command("add")(silence_add)
    silence_app.command("list")(silence_list)
    silence_app.command("expire")(silence_expire)


__all__ = ["parse_duration", "register_cli", "sample_notification"]
