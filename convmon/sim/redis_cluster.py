"""A real local Redis Cluster: six ``redis-server --cluster-enabled yes`` nodes on 127.0.0.1.

In: the redis-server and redis-cli binaries. Out: a running cluster (three primaries, one
replica each, made by ``redis-cli --cluster create ... --cluster-replicas 1``) in a temporary
directory, its startup nodes as a ``redis+cluster://`` URL, and the means to break it: kill a
primary (SIGKILL, as a crashed host) and wait for its replica to be promoted.

Used by the test session (started once, only when a cluster test asks for it) and by
``bench/scale.py``; production code never imports it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_sync

NODES = 6
NODE_TIMEOUT_MS = 1000
"""Short, so that a killed primary's replica is promoted within a couple of seconds."""


class ClusterSetupError(RuntimeError):
    """The local cluster could not be started."""


def free_port_pair() -> int:
    """A port ``p`` such that ``p`` and the cluster bus port ``p + 10000`` are both free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise ClusterSetupError("no free port pair for a cluster node")


@dataclass
class ClusterNode:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def command(self, *args: Any) -> Any:
        """One command on this node alone (no cluster redirection)."""
        client = self.client()
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            client.close()


@dataclass
class LocalRedisCluster:
    """Six nodes under ``root``; `start` builds the cluster, `stop` kills every node."""

    server: str
    cli: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cm-cluster-")))
    nodes: list[ClusterNode] = field(default_factory=list)

    @classmethod
    def from_path(cls) -> LocalRedisCluster | None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            return None
        return cls(server=server, cli=cli)

    @property
    def url(self) -> str:
        """Every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, wait_s: float = 60.0) -> None:
        for i in range(NODES):
            directory = self.root / f"n{i}"
            directory.mkdir(parents=True, exist_ok=True)
            node = ClusterNode(free_port_pair(), directory)
            self._spawn(node)
            self.nodes.append(node)
        for node in self.nodes:
            self._wait_answering(node, wait_s)
        create = [self.cli, "--cluster", "create",
                  *(f"127.0.0.1:{n.port}" for n in self.nodes),
                  "--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=wait_s, check=False)
        if done.returncode != 0:
            self.stop()
            raise ClusterSetupError(
                f"redis-cli --cluster create failed: {done.stdout.decode()[-500:]}"
                f"{done.stderr.decode()[-500:]}"
            )
        self.wait_healthy(wait_s)

    def _spawn(self, node: ClusterNode) -> None:
        args = [
            self.server, "--port", str(node.port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(node.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--daemonize", "no", "--logfile", str(node.directory / "redis.log"),
        ]
        node.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )

    @staticmethod
    def _wait_answering(node: ClusterNode, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            with contextlib.suppress(redis_sync.RedisError):
                if node.command("PING"):
                    return
            if node.process is not None and node.process.poll() is not None:
                raise ClusterSetupError(f"cluster node on port {node.port} exited")
            if time.monotonic() > deadline:
                raise ClusterSetupError(f"cluster node on port {node.port} did not answer")
            time.sleep(0.05)

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def wait_healthy(self, wait_s: float = 60.0) -> None:
        """Until every live node says the cluster is ok and all slots are served."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                ok = all(b"cluster_state:ok" in n.command("CLUSTER", "INFO")
                         for n in self.live_nodes())
            except redis_sync.RedisError:
                ok = False
            if ok:
                return
            if time.monotonic() > deadline:
                raise ClusterSetupError("the local cluster did not become healthy")
            time.sleep(0.1)

    def primary_for(self, key: str) -> ClusterNode:
        """The live node that is primary for ``key``'s slot."""
        node = self.serving_primary(key)
        if node is None:
            raise ClusterSetupError(f"no live primary serves the slot of {key}")
        return node

    def serving_primary(self, key: str) -> ClusterNode | None:
        """The live primary serving ``key``'s slot, or None (e.g. during a failover)."""
        try:
            slot = int(self.live_nodes()[0].command("CLUSTER", "KEYSLOT", key))
            for node in self.live_nodes():
                if node.command("ROLE")[0] != b"master":
                    continue
                for row in node.command("CLUSTER", "SLOTS"):
                    if int(row[0]) <= slot <= int(row[1]) and int(row[2][1]) == node.port:
                        return node
        except redis_sync.RedisError:
            return None
        return None

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL a node (a crashed host: no shutdown, no final fsync)."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()

    def restart(self, node: ClusterNode) -> None:
        """Start a killed node again on its port and directory (it rejoins as a replica)."""
        self._spawn(node)
        self._wait_answering(node, 30.0)

    def flush(self) -> None:
        for node in self.live_nodes():
            with contextlib.suppress(redis_sync.RedisError):
                if node.command("ROLE")[0] == b"master":
                    node.command("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)
