"""Where running daemons say they are, so that CLI commands find them.

In: a daemon on embedded Redis (``convmon run`` without ``redis.url``, and ``convmon demo``,
whose data dir is temporary) calls `announce` at start and `withdraw` at exit. Out: one
JSON file per daemon in the run dir (the ``run_dir`` setting; by default
``$XDG_RUNTIME_DIR/convmon``, else a per-user temp dir) naming its pid, instance, data
dir, Redis socket and HTTP address.
`find_running` lists the daemons whose process is alive and whose Redis answers; files of
dead processes are removed as they are found.

Why: a read command (``convmon status``, ``pools show``) must show the running daemon's
state, demo included, or say plainly that none runs; it must never start a Redis of its
own and show an empty or stale picture.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunRecord:
    pid: int
    instance: str
    data_dir: str
    redis_dir: str
    """Where the embedded server keeps its socket (configured URLs are never written here:
    they hold secrets, and commands find those in their own configuration)."""
    prefix: str
    http: str
    """``host:port`` of the HTTP server, "" when disabled."""
    demo: bool
    started_at: float


def run_dir(configured: Path | None = None) -> Path:
    """The directory of run files (created on first use)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [configured] if configured is not None else [
        *([Path(runtime) / "convmon"] if runtime else []),
        Path(tempfile.gettempdir()) / f"convmon-{os.getuid()}",
    ]
    for path in candidates:
        try:
            path.expanduser().mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            continue
        if os.access(path.expanduser(), os.W_OK):
            return path.expanduser()
    raise OSError(f"no writable run directory among {[str(p) for p in candidates]}")


def announce(record: RunRecord, directory: Path | None = None) -> Path:
    """Write this daemon's run file (atomically) and return its path."""
    path = run_dir(directory) / f"{record.pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(path)
    return path


def withdraw(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def find_running(directory: Path | None = None) -> list[RunRecord]:
    """Run files of live processes, newest first (files of dead processes are removed)."""
    try:
        where = run_dir(directory)
    except OSError:
        return []
    found: list[RunRecord] = []
    for path in where.glob("*.json"):
        try:
            record = RunRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if not _alive(record.pid):
            withdraw(path)
            continue
        found.append(record)
    return sorted(found, key=lambda r: r.started_at, reverse=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
