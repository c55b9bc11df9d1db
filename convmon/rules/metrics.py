"""Process metrics of the rule engine (CONTRACTS §5), on the injected registry.

Every series exists from the start: unlabelled counters at 0, per-rule children created
by the engine for each loaded rule.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class RuleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "convmon_rule_evaluations", "Rule evaluations.", ["rule"], registry=registry
        )
        self.errors = Counter(
            "convmon_rule_evaluation_errors", "Rule evaluations that failed.", ["rule"],
            registry=registry,
        )
        self.seconds = Histogram(
            "convmon_rule_evaluation_seconds", "Time to evaluate one rule once.",
            registry=registry,
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                     0.05, 0.1),
        )
        self.transitions = Counter(
            "convmon_alert_transitions", "Alert transitions written to the outbox.",
            ["state"], registry=registry,
        )
        self.reconcile_dropped = Counter(
            "convmon_rules_reconcile_dropped",
            "Alert instance updates that lost every compare-and-set of their round "
            "(carried to the worker's next round).",
            registry=registry,
        )
