"""Every Redis key convmon uses, in one place.

Keys are built from a prefix (default ``convmon``) so that several deployments can share
one Redis. Packages never format key strings themselves: they ask this module, which keeps
the key space documented and greppable.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "convmon"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # Event bus
    @property
    def events(self) -> str:
        """Stream of all events (`convmon:events`)."""
        return self._k("events")

    @property
    def events_dead(self) -> str:
        """Dead-letter stream for events delivered too often without success."""
        return self._k("events", "dead")

    def dedupe(self, event_id: str) -> str:
        """Marker set when an event id was published (TTL bounded)."""
        return self._k("seen", event_id)

    def checkpoint(self, source: str) -> str:
        """Collector checkpoint (a string value, written atomically with its events)."""
        return self._k("checkpoint", source)

    # Alerts outbox
    @property
    def alerts(self) -> str:
        """Stream of alert transitions (the outbox the dispatcher reads)."""
        return self._k("alerts")

    @property
    def alerts_dead(self) -> str:
        return self._k("alerts", "dead")

    @property
    def active_alerts(self) -> str:
        """Hash: fingerprint -> latest `AlertTransition` JSON of every pending or firing
        instance. The rule engine writes it atomically with the outbox entry; the CLI,
        the HTTP API and the metrics read it."""
        return self._k("alerts", "active")

    # Process and collector health
    def heartbeat(self, instance: str) -> str:
        """Per-process heartbeat hash with a TTL: role, pid, host, started_at, components."""
        return self._k("heartbeat", instance)

    @property
    def heartbeat_pattern(self) -> str:
        return self._k("heartbeat", "*")

    def collector_status(self, collector: str) -> str:
        """Hash: connected, last_event_at, last_position, errors, reconnects, detail."""
        return self._k("collector", collector)

    def collector_live(self, collector: str) -> str:
        """Liveness of a collector: a string (the instance that refreshed it last) with a
        TTL, refreshed by the heartbeat of a process whose collector is connected and
        whose component is running. The collector is up exactly while this key exists;
        a dead process or a stopped task lets it expire within one heartbeat TTL."""
        return self._k("collector", collector, "live")

    @property
    def collectors(self) -> str:
        """Set of collector names that have reported a status."""
        return self._k("collectors")

    # Namespaces owned by packages. Each package builds its own keys under its namespace
    # through `ns`, so this module stays the single place where the layout is decided.
    def ns(self, namespace: str, *parts: str) -> str:
        """A key in a package namespace, e.g. ``ns("rules", "alert", fp)``."""
        return self._k(namespace, *parts)
