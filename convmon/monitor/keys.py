"""Every Redis key convmon uses, in one place, and the cluster layout they follow.

Keys are built from a prefix (default ``convmon``) so that several deployments can share
one Redis. Packages never format key strings themselves: every key has a named method
here, which keeps the key space documented and greppable in one place. Third-party plugins
get their own namespace (`Keys.plugin`).

Cluster layout (hash tags). Redis Cluster runs a script or a MULTI only when all its keys
hash to one slot, and a key's slot is decided by the text between its first ``{`` and
``}``. Keys that one script or transaction touches together therefore share a tag, and the
tags are chosen so that the busy parts land on different slots:

=================  =====================================================================
tag                keys (and the script or MULTI that needs them together)
=================  =====================================================================
``{ev<k>}``        event stream shard ``k``, its dead letters, the dedupe markers of the
                   events it carries (bus publish script; dead-letter MULTI; requeue)
``{alerts}``       the alerts outbox, its dead letters, ``alerts:active`` and every rule
                   instance, live set and the rule index (rule engine's write script)
``{dispatch}``     the dispatcher's state: due set, firing hash, transition sequences,
                   groups, notification logs, silences, dead notifications (its scripts)
``{agg:<group>}``  the aggregates of one group (`AGGREGATE_GROUPS`): ``btc`` block windows,
                   ``stable`` stablecoin series and supplies, ``depin`` payout series,
                   ``market`` prices and DePIN flows (valued at those prices), ``ops``
                   the monitor's own samples and collector statuses, ``x402`` machine
                   payments; each with the applied markers of its events (one apply
                   script call per group, every key declared; the keys inside a group
                   are listed in `convmon.rules.aggregates.layout`)
``{collectors}``   collector status hashes, their liveness keys and the collector set
                   (the status MULTI)
``{sol:<name>}``   one Solana collector's signature queue, sequence, done and failed sets
``{btc}``          the bitcoin collector's block records, pool list and reorg journal
(none)             keys only ever used alone: checkpoints, heartbeats, market sources,
                   receiver rate counters, the layout version, the bus layout
                   (`Keys.bus_layout`), plugin keys
=================  =====================================================================

The event stream is partitioned into ``bus.shards`` streams (`event_stream`); an event's
shard follows its source family (the part of its kind before the first dot, see
`convmon.monitor.shards`), so one family's events stay in order on one stream and the
families spread over the cluster's nodes (the tags ``{ev0}``..``{ev3}`` hash to slots
9271, 13334, 1141 and 5204: one per primary of a three-primary cluster, and one more).
The rules workers' windows spread the same way: each aggregate group is its own tag
(``{agg:btc}`` slot 2875, ``{agg:depin}`` 3049, ``{agg:ops}`` 6047, ``{agg:market}`` 8482,
``{agg:x402}`` 12411, ``{agg:stable}`` 14954: two per primary of a three-primary cluster),
so one batch's script calls run on several nodes at once.
Standalone Redis and Sentinel ignore tags: the same layout runs everywhere. The shard count
and family pins the streams and markers were written with are recorded (`Keys.bus_layout`):
a daemon configured otherwise refuses to start until ``convmon bus reshard`` has moved them
(`convmon.monitor.reshard`).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "convmon"
AGGREGATE_GROUPS = ("btc", "stable", "depin", "market", "ops", "x402")
"""The aggregate groups, one hash tag each (`Keys.aggregate_base`)."""
SERIES_GROUPS: dict[str, str] = {
    "mint": "stable", "burn": "stable", "supply": "stable", "dp": "depin", "dpn": "depin",
}
"""Time-series family -> the aggregate group that keeps its series (and lists them in its
``ts:meta``)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # Event bus
    @property
    def events(self) -> str:
        """The first (with ``bus.shards: 1``, the only) event stream shard."""
        return self.event_stream(0)

    @property
    def events_dead(self) -> str:
        """Dead-letter stream of the first event stream shard."""
        return self.event_dead(0)

    def event_stream(self, shard: int) -> str:
        """Event stream shard ``shard`` (``convmon:{ev<shard>}:events``)."""
        return self._k(_event_tag(shard), "events")

    def event_dead(self, shard: int) -> str:
        """Dead-letter stream of event stream shard ``shard`` (same slot: the consumer
        moves an entry and acks it in one MULTI)."""
        return self._k(_event_tag(shard), "events", "dead")

    def event_streams(self, shards: int) -> list[str]:
        """Every event stream shard of a bus with ``shards`` shards."""
        return [self.event_stream(k) for k in range(shards)]

    def event_dead_streams(self, shards: int) -> list[str]:
        """Every event dead-letter stream of a bus with ``shards`` shards."""
        return [self.event_dead(k) for k in range(shards)]

    def dedupe(self, event_id: str, shard: int = 0) -> str:
        """Marker set when an event id was published (TTL bounded), beside the shard
        stream that carries the event (the publish script checks and appends at once)."""
        return self._k(_event_tag(shard), "seen", event_id)

    @property
    def bus_layout(self) -> str:
        """String: the layout of the event bus this Redis holds, as JSON ``{"shards": N,
        "family_shards": {family: shard}}`` (`convmon.monitor.buslayout`). Written by the
        first daemon that starts on an empty Redis and by ``convmon bus reshard``; every
        daemon compares it with its ``bus`` settings at start."""
        return self._k("bus", "layout")

    def checkpoint(self, source: str) -> str:
        """Collector checkpoint (a string value, written atomically with its events)."""
        return self._k("checkpoint", source)

    # Alerts outbox
    @property
    def alerts(self) -> str:
        """Stream of alert transitions (the outbox the dispatcher reads)."""
        return self._k("{alerts}", "outbox")

    @property
    def alerts_dead(self) -> str:
        """Dead-letter stream of the alerts outbox."""
        return self._k("{alerts}", "outbox", "dead")

    @property
    def active_alerts(self) -> str:
        """Hash: fingerprint -> latest `AlertTransition` JSON of every pending or firing
        instance. The rule engine writes it atomically with the outbox entry; the CLI,
        the HTTP API and the metrics read it."""
        return self._k("{alerts}", "active")

    # Process and collector health
    def heartbeat(self, instance: str) -> str:
        """Per-process heartbeat hash with a TTL: role, pid, host, started_at, components."""
        return self._k("heartbeat", instance)

    @property
    def heartbeat_pattern(self) -> str:
        return self._k("heartbeat", "*")

    def collector_status(self, collector: str) -> str:
        """Hash: connected, last_event_at, last_position, errors, reconnects, detail."""
        return self._k("{collectors}", "collector", collector)

    def collector_live(self, collector: str) -> str:
        """Liveness of a collector: a string (the instance that refreshed it last) with a
        TTL, refreshed by the heartbeat of a process whose collector is connected and
        whose component is running. The collector is up exactly while this key exists;
        a dead process or a stopped task lets it expire within one heartbeat TTL."""
        return self._k("{collectors}", "collector", collector, "live")

    @property
    def collectors(self) -> str:
        """Set of collector names that have reported a status."""
        return self._k("{collectors}", "set")

    # Bitcoin collector
    @property
    def btc_blocks(self) -> str:
        """Hash: height -> recent block record (what reorg detection walks back through)."""
        return self._k("{btc}", "blocks")

    @property
    def btc_registry(self) -> str:
        """Hash: the pool list in use (origin, version, pool count, checked_at)."""
        return self._k("{btc}", "registry")

    @property
    def btc_reorg_journal(self) -> str:
        """String: a reorg being applied (record changes + events), replayed after a crash."""
        return self._k("{btc}", "reorg_journal")

    @property
    def btc_templates(self) -> str:
        """String: the stratum collector's template clusters (JSON, what ``pools
        templates`` and the gauges read)."""
        return self._k("{btc}", "templates")

    @property
    def btc_template_rounds(self) -> str:
        """Hash: prev_hash -> one round of matched stratum jobs (the clustering evidence,
        kept across restarts; trimmed to the collector's ``keep_heights``)."""
        return self._k("{btc}", "template_rounds")

    # Solana collectors (``collector`` is the plugin name: depin, stablecoins_solana)
    def solana_queue(self, collector: str) -> str:
        """Sorted set: signatures waiting to be fetched, scored by arrival order."""
        return self._k(_sol_tag(collector), "queue")

    def solana_queue_seq(self, collector: str) -> str:
        """Counter giving each queued signature its arrival number."""
        return self._k(_sol_tag(collector), "seq")

    def solana_done(self, collector: str) -> str:
        """Sorted set: signatures handled recently (dedupe of re-announcements)."""
        return self._k(_sol_tag(collector), "done")

    def solana_failed(self, collector: str) -> str:
        """Sorted set: signatures given up on."""
        return self._k(_sol_tag(collector), "failed")

    def solana_failed_reason(self, collector: str) -> str:
        """Hash: given-up signature -> why."""
        return self._k(_sol_tag(collector), "failed", "reason")

    def solana_last_seen(self, collector: str, address: str) -> str:
        """String: the newest signature seen for a watched address (gap recovery)."""
        return self._k(_sol_tag(collector), "last", address)

    # Market collector
    def market_source(self, source: str) -> str:
        """Hash: instance -> JSON health of a price source as that replica sees it."""
        return self._k("market", "source", source)

    # Rule engine
    def rule_instance(self, fingerprint: str) -> str:
        """Hash: state of one alert instance (rule + label set)."""
        return self._k("{alerts}", "rules", "inst", fingerprint)

    def rule_live(self, rule: str) -> str:
        """Set: fingerprints of a rule's pending or firing instances."""
        return self._k("{alerts}", "rules", "live", rule)

    @property
    def rules_index(self) -> str:
        """Set: rules that have live instances (resolved when removed from the config)."""
        return self._k("{alerts}", "rules", "index")

    def aggregate_base(self, group: str) -> str:
        """Prefix of the aggregate keys of ``group`` (one of `AGGREGATE_GROUPS`):
        ``<prefix>:rules:{agg:<group>}``. The keys under it share the group's hash tag."""
        if group not in AGGREGATE_GROUPS:
            raise ValueError(f"unknown aggregate group {group!r}")
        return self._k("rules", f"{{agg:{group}}}")

    @property
    def aggregates_legacy(self) -> str:
        """Prefix every aggregate key had before the groups (layout 2, one ``{agg}`` slot);
        only `convmon.monitor.aggmigration` reads it."""
        return self._k("rules", "{agg}")

    # Alert delivery
    @property
    def alerts_due(self) -> str:
        """Sorted set: group key -> when the dispatcher must next evaluate the group."""
        return self._k("{dispatch}", "due")

    @property
    def alerts_firing(self) -> str:
        """Hash: fingerprint -> latest firing transition (inhibition reads it)."""
        return self._k("{dispatch}", "firing")

    def alert_seq(self, fingerprint: str) -> str:
        """String: the newest transition sequence applied for an alert instance."""
        return self._k("{dispatch}", "seq", fingerprint)

    def alert_group(self, group_key: str) -> str:
        """Hash: a notification group's route, receiver, labels and timers."""
        return self._k("{dispatch}", "group", group_key)

    def alert_group_alerts(self, group_key: str) -> str:
        """Hash: fingerprint -> transition, the alerts of a notification group."""
        return self._k("{dispatch}", "group", group_key, "alerts")

    def nflog(self, group_key: str) -> str:
        """Hash: the notification log of a group (what was sent, claims, owed alerts)."""
        return self._k("{dispatch}", "nflog", group_key)

    @property
    def notifications_dead(self) -> str:
        """Stream: notifications that exhausted their retries."""
        return self._k("{dispatch}", "notifications", "dead")

    def receiver_rate(self, receiver: str, minute: int) -> str:
        """Counter: notifications sent to a receiver in one minute (its rate limit)."""
        return self._k("alerts", "rate", receiver, str(minute))

    @property
    def silences(self) -> str:
        """Hash: silence id -> silence JSON."""
        return self._k("{dispatch}", "silences")

    # Key layout
    @property
    def layout(self) -> str:
        """String: the key layout version this Redis holds (`convmon.monitor.keymigration`)."""
        return self._k("layout")

    # Third-party plugins and tests
    def plugin(self, name: str, *parts: str) -> str:
        """A key owned by a plugin outside this package: ``<prefix>:plugin:<name>:...``.
        Built-in packages never use it; their keys are named above."""
        return self._k("plugin", name, *parts)


def _event_tag(shard: int) -> str:
    if shard < 0:
        raise ValueError(f"an event stream shard is >= 0, not {shard}")
    return f"{{ev{shard}}}"


def _sol_tag(collector: str) -> str:
    return f"{{sol:{collector}}}"
