"""Every Redis key convmon uses, in one place.

Keys are built from a prefix (default ``convmon``) so that several deployments can share
one Redis. Packages never format key strings themselves: every key has a named method
here, which keeps the key space documented and greppable in one place (and is where a
cluster layout's hash tags are decided). Third-party plugins get their own namespace
(`Keys.plugin`).
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
        """Dead-letter stream of the alerts outbox."""
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

    # Bitcoin collector
    @property
    def btc_blocks(self) -> str:
        """Hash: height -> recent block record (what reorg detection walks back through)."""
        return self._k("bitcoin", "blocks")

    @property
    def btc_registry(self) -> str:
        """Hash: the pool list in use (origin, version, pool count, checked_at)."""
        return self._k("bitcoin", "registry")

    @property
    def btc_reorg_journal(self) -> str:
        """String: a reorg being applied (record changes + events), replayed after a crash."""
        return self._k("bitcoin", "reorg_journal")

    @property
    def btc_templates(self) -> str:
        """String: the stratum collector's template clusters (JSON, what ``pools
        templates`` and the gauges read)."""
        return self._k("bitcoin", "templates")

    @property
    def btc_template_rounds(self) -> str:
        """Hash: prev_hash -> one round of matched stratum jobs (the clustering evidence,
        kept across restarts; trimmed to the collector's ``keep_heights``)."""
        return self._k("bitcoin", "template_rounds")

    # Solana collectors (``collector`` is the plugin name: depin, stablecoins_solana)
    def solana_queue(self, collector: str) -> str:
        """Sorted set: signatures waiting to be fetched, scored by arrival order."""
        return self._k("solana", collector, "queue")

    def solana_queue_seq(self, collector: str) -> str:
        """Counter giving each queued signature its arrival number."""
        return self._k("solana", collector, "seq")

    def solana_done(self, collector: str) -> str:
        """Sorted set: signatures handled recently (dedupe of re-announcements)."""
        return self._k("solana", collector, "done")

    def solana_failed(self, collector: str) -> str:
        """Sorted set: signatures given up on."""
        return self._k("solana", collector, "failed")

    def solana_failed_reason(self, collector: str) -> str:
        """Hash: given-up signature -> why."""
        return self._k("solana", collector, "failed", "reason")

    def solana_last_seen(self, collector: str, address: str) -> str:
        """String: the newest signature seen for a watched address (gap recovery)."""
        return self._k("solana", collector, "last", address)

    # Market collector
    def market_source(self, source: str) -> str:
        """Hash: instance -> JSON health of a price source as that replica sees it."""
        return self._k("market", "source", source)

    # Rule engine
    def rule_instance(self, fingerprint: str) -> str:
        """Hash: state of one alert instance (rule + label set)."""
        return self._k("rules", "inst", fingerprint)

    def rule_live(self, rule: str) -> str:
        """Set: fingerprints of a rule's pending or firing instances."""
        return self._k("rules", "live", rule)

    @property
    def rules_index(self) -> str:
        """Set: rules that have live instances (resolved when removed from the config)."""
        return self._k("rules", "index")

    @property
    def aggregates(self) -> str:
        """Prefix of every aggregate key (windows, series, last values): the Lua scripts in
        ``rules/aggregates/lua`` build their keys as ``<this>:<parts>``. The ``{agg}`` hash
        tag keeps them on one cluster slot."""
        return self._k("rules", "{agg}")

    # Alert delivery
    @property
    def alerts_due(self) -> str:
        """Sorted set: group key -> when the dispatcher must next evaluate the group."""
        return self._k("alerts", "due")

    @property
    def alerts_firing(self) -> str:
        """Hash: fingerprint -> latest firing transition (inhibition reads it)."""
        return self._k("alerts", "firing")

    def alert_seq(self, fingerprint: str) -> str:
        """String: the newest transition sequence applied for an alert instance."""
        return self._k("alerts", "seq", fingerprint)

    def alert_group(self, group_key: str) -> str:
        """Hash: a notification group's route, receiver, labels and timers."""
        return self._k("alerts", "group", group_key)

    def alert_group_alerts(self, group_key: str) -> str:
        """Hash: fingerprint -> transition, the alerts of a notification group."""
        return self._k("alerts", "group", group_key, "alerts")

    def nflog(self, group_key: str) -> str:
        """Hash: the notification log of a group (what was sent, claims, owed alerts)."""
        return self._k("alerts", "nflog", group_key)

    @property
    def notifications_dead(self) -> str:
        """Stream: notifications that exhausted their retries."""
        return self._k("alerts", "notifications", "dead")

    def receiver_rate(self, receiver: str, minute: int) -> str:
        """Counter: notifications sent to a receiver in one minute (its rate limit)."""
        return self._k("alerts", "rate", receiver, str(minute))

    @property
    def silences(self) -> str:
        """Hash: silence id -> silence JSON."""
        return self._k("alerts", "silences")

    # Third-party plugins and tests
    def plugin(self, name: str, *parts: str) -> str:
        """A key owned by a plugin outside this package: ``<prefix>:plugin:<name>:...``.
        Built-in packages never use it; their keys are named above."""
        return self._k("plugin", name, *parts)
