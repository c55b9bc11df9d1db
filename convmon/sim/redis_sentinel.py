"""A real local Sentinel setup: a primary, a replica and one sentinel on 127.0.0.1.

In: the redis-server binary (a sentinel is ``redis-server <conf> --sentinel``). Out: the
setup running in a temporary directory, its ``redis+sentinel://`` URL, and the means to
kill the primary (SIGKILL) and bring it back (the sentinel makes it a replica of the
promoted one). One sentinel with quorum 1 is enough to fail over on one machine; production
runs three. Used by tests; production code never imports it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_sync

from convmon.sim.redis_cluster import ClusterSetupError, free_port_pair

SERVICE = "convmon"


@dataclass
class Server:
    port: int
    directory: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis_sync.RedisError):
                client = redis_sync.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterSetupError(f"redis on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@dataclass
class LocalSentinel:
    server: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cm-sentinel-")))
    primary: Server | None = None
    replica: Server | None = None
    sentinel: Server | None = None

    @classmethod
    def from_path(cls) -> LocalSentinel | None:
        server = shutil.which("redis-server")
        return cls(server=server) if server else None

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}/0"

    def _data_server(self, name: str, replica_of: int | None) -> Server:
        port = free_port_pair()
        directory = self.root / name
        directory.mkdir(parents=True)
        args = [self.server, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                str(directory), "--appendonly", "yes", "--save", "", "--logfile",
                str(directory / "redis.log")]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        return Server(port, directory, args)

    def start(self) -> None:
        self.primary = self._data_server("primary", None)
        self.primary.start()
        self.replica = self._data_server("replica", self.primary.port)
        self.replica.start()
        port = free_port_pair()
        directory = self.root / "sentinel"
        directory.mkdir()
        conf = directory / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self.sentinel = Server(port, directory, [self.server, str(conf), "--sentinel"])
        self.sentinel.start()

    def primary_port(self) -> int | None:
        """The port the sentinel names as the primary now."""
        assert self.sentinel is not None
        client = redis_sync.Redis(host="127.0.0.1", port=self.sentinel.port, socket_timeout=2)
        try:
            found: Any = client.sentinel_get_master_addr_by_name(SERVICE)
        except redis_sync.RedisError:
            return None
        finally:
            client.close()
        return int(found[1]) if found else None

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.primary):
            if server is not None:
                server.kill()
        shutil.rmtree(self.root, ignore_errors=True)
