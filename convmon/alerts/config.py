"""The ``alerts`` configuration section: receivers, the route tree, inhibit rules, retry
and rate-limit policy, and link templates.

Names and timing fields follow Alertmanager's configuration so that users who know it know
this. Durations are seconds. Secrets (webhook URLs, tokens, passwords, HMAC keys) are
`Secret` references and are revealed only when a notification is sent.

A receiver's ``timeout_s`` bounds one whole send. On shutdown the dispatcher lets sends in
flight finish, so ``convmon check`` requires every receiver timeout to be shorter than the
core ``supervisor.shutdown_timeout_s`` (15 s by default; receivers default to 10 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from convmon.monitor.config import Model
from convmon.monitor.secrets import Secret

from .errors import AlertsConfigError
from .matchers import Matcher, parse_matchers


def _check_matchers(values: list[str]) -> list[str]:
    parse_matchers(values)
    return values


class _ReceiverBase(Model):
    name: str = Field(min_length=1)
    send_resolved: bool = True
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    """At most this many notifications per minute to this receiver (shared by replicas)."""


class SlackReceiver(_ReceiverBase):
    type: Literal["slack"] = "slack"
    webhook_url: Secret | None = None
    """Incoming-webhook URL."""
    token: Secret | None = None
    """Bot token for ``chat.postMessage`` (used with ``channel``) instead of a webhook."""
    channel: str | None = None
    api_url: str = "https://slack.com/api"
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> SlackReceiver:
        if (self.webhook_url is None) == (self.token is None):
            raise AlertsConfigError("set exactly one of webhook_url or token (with channel)")
        if self.token is not None and not self.channel:
            raise AlertsConfigError("a bot token needs a channel")
        return self


class EmailReceiver(_ReceiverBase):
    type: Literal["email"] = "email"
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0)
    """For the whole send (connect, TLS, auth, MAIL, RCPT, DATA), not per SMTP step."""
    validate_certs: bool = True
    ca_file: Path | None = None
    """CA bundle to verify the server with (a private CA); default: the system store."""
    message_id_domain: str = "convmon.local"


class WebhookReceiver(_ReceiverBase):
    type: Literal["webhook"] = "webhook"
    url: Secret
    hmac_secret: Secret | None = None
    """Shared secret: the body is signed as ``X-Convmon-Signature: sha256=<hex>``."""
    timeout_s: float = Field(default=10.0, gt=0)


class AlertmanagerReceiver(_ReceiverBase):
    type: Literal["alertmanager"] = "alertmanager"
    urls: list[Secret] = Field(min_length=1)
    """Base URLs of the Alertmanager replicas (each receives every push, as Prometheus does)."""
    resend_interval_s: float = Field(default=60.0, gt=0)
    """Firing alerts are pushed again this often; Alertmanager resolves alerts that stop
    arriving after their endsAt (set to 4 * this interval)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Per push; the Alertmanagers are pushed to at the same time."""


class ConsoleReceiver(_ReceiverBase):
    type: Literal["console"] = "console"


class HeartbeatReceiver(_ReceiverBase):
    """A dead-man's switch (healthchecks.io, Dead Man's Snitch, Uptime Kuma push, cron
    monitors): every notification it is sent is one ping of ``url``. Route the always-firing
    ``Watchdog`` alert here with a short ``repeat_interval_s``; the service raises the alarm
    when the pings stop, i.e. when convmon, its Redis or its delivery path is down."""

    type: Literal["heartbeat"] = "heartbeat"
    url: Secret
    """The check's ping URL. A secret: such URLs embed the check's key."""
    method: Literal["GET", "POST"] = "GET"
    """POST sends the notification's JSON as the body (the service may log it)."""
    timeout_s: float = Field(default=10.0, gt=0)
    send_resolved: bool = False
    """Off: a resolved Watchdog means the switch stopped, which must not read as a ping."""


class DiscardReceiver(_ReceiverBase):
    """Delivers nowhere (Alertmanager's receiver without integrations, often named
    ``null``): for alerts that must match a route but notify nobody."""

    type: Literal["discard"] = "discard"


ReceiverConfig = Annotated[
    SlackReceiver | EmailReceiver | WebhookReceiver | AlertmanagerReceiver | ConsoleReceiver
    | HeartbeatReceiver | DiscardReceiver,
    Field(discriminator="type"),
]


class RouteConfig(Model):
    receiver: str | None = None
    """Inherited from the parent route when unset."""
    matchers: list[str] = Field(default_factory=list)
    group_by: list[str] | None = None
    """Labels to group by; ``["..."]`` groups by all labels. Inherited when unset."""
    group_wait_s: float | None = Field(default=None, ge=0)
    group_interval_s: float | None = Field(default=None, gt=0)
    repeat_interval_s: float | None = Field(default=None, gt=0)
    send_missed_resolved: bool | None = None
    """Deliver an alert that fired and resolved while its receiver could not be reached
    (its firing notification was due but never delivered) as a resolved notification that
    says when it fired and resolved, even if the receiver has ``send_resolved: false``.
    Inherited when unset; on by default."""
    continue_: bool = Field(default=False, alias="continue")
    routes: list[RouteConfig] = Field(default_factory=list)

    _v = field_validator("matchers")(_check_matchers)


class InhibitRule(Model):
    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    _vs = field_validator("source_matchers", "target_matchers")(_check_matchers)

    def sources(self) -> tuple[Matcher, ...]:
        return parse_matchers(self.source_matchers)

    def targets(self) -> tuple[Matcher, ...]:
        return parse_matchers(self.target_matchers)


class RetryPolicy(Model):
    initial_backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    give_up_after_s: float = Field(default=6 * 3600.0, gt=0)
    """After failing this long a notification goes to the dead-letter stream."""
    lease_s: float = Field(default=60.0, gt=0)
    """A claimed notification not marked sent within this time may be claimed again by
    another replica (the sender is presumed dead)."""


class LinkTemplates(Model):
    bitcoin_block: str = "https://mempool.space/block/{id}"
    ethereum_tx: str = "https://etherscan.io/tx/{id}"
    solana_tx: str = "https://solscan.io/tx/{id}"


WATCHDOG_ALERTNAME = "Watchdog"
"""The always-firing alert of the default rule pack (the dead-man's switch)."""
WATCHDOG_DISCARD = "watchdog-discard"
"""The receiver (and route) added when no route names the Watchdog: it must never page a
person, and a receiver meant for people would get it every ``repeat_interval``."""


def _names_watchdog(route: Any) -> bool:
    """Whether ``route`` (raw or validated) or a route below it has a matcher on
    ``alertname`` that the Watchdog passes."""
    if isinstance(route, RouteConfig):
        matchers: Any = route.matchers
        children: Any = route.routes
    elif isinstance(route, dict):
        matchers, children = route.get("matchers") or [], route.get("routes") or []
    else:
        return False
    try:
        parsed = parse_matchers(list(matchers))
    except (TypeError, ValueError):  # reported by the field's own validation
        parsed = ()
    watchdog = {"alertname": WATCHDOG_ALERTNAME}
    if any(m.name == "alertname" and m.op in ("=", "=~") and m.matches(watchdog)
           for m in parsed):
        return True
    return isinstance(children, list) and any(_names_watchdog(c) for c in children)


def _route_watchdog_nowhere(data: dict[str, Any]) -> dict[str, Any]:
    route = data.get("route")
    if route is None or _names_watchdog(route):
        return data
    if isinstance(route, RouteConfig):
        route = route.model_dump(by_alias=True, exclude_unset=True)
    if not isinstance(route, dict):
        return data
    receivers = list(data.get("receivers") or _default_receivers())
    if not any(_receiver_name(r) == WATCHDOG_DISCARD for r in receivers):
        receivers.append({"type": "discard", "name": WATCHDOG_DISCARD})
    discard = {"matchers": [f'alertname="{WATCHDOG_ALERTNAME}"'], "receiver": WATCHDOG_DISCARD}
    return {**data, "receivers": receivers,
            "route": {**route, "routes": [discard, *(route.get("routes") or [])]}}


def _receiver_name(receiver: Any) -> Any:
    return receiver.get("name") if isinstance(receiver, dict) else getattr(receiver, "name", None)


def _default_receivers() -> list[ReceiverConfig]:
    return [ConsoleReceiver(name="console")]


def _default_route() -> RouteConfig:
    return RouteConfig(
        receiver="console", group_by=["alertname"], group_wait_s=30, group_interval_s=300,
        repeat_interval_s=4 * 3600,
    )


class AlertsConfig(Model):
    enabled: bool = True
    receivers: list[ReceiverConfig] = Field(default_factory=_default_receivers)
    """Without a route naming ``alertname="Watchdog"``, a ``discard`` receiver named
    ``watchdog-discard`` is added (see ``route``)."""
    route: RouteConfig = Field(default_factory=_default_route)
    """Unless some route has a matcher on ``alertname`` that ``Watchdog`` passes, a first
    child route ``alertname="Watchdog"`` → ``watchdog-discard`` is added: the always-firing
    Watchdog reaches a person's receiver only when a route says so."""
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    retry: RetryPolicy = RetryPolicy()
    links: LinkTemplates = LinkTemplates()
    external_url: str = ""
    """Base URL of convmon's HTTP API, put into notifications when set."""
    tick_s: float = Field(default=1.0, gt=0)
    """How often the dispatcher looks for due groups."""
    demo_console: bool = False
    """Also send every alert to a console receiver (set by ``convmon demo``)."""

    @model_validator(mode="before")
    @classmethod
    def _complete_routes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = cls._add_demo_console(dict(data))
        return _route_watchdog_nowhere({"route": _default_route(), **data})

    @staticmethod
    def _add_demo_console(data: dict[str, Any]) -> dict[str, Any]:
        if not data.get("demo_console"):
            return data
        data = dict(data)
        receivers = list(data.get("receivers") or [{"type": "console", "name": "console"}])
        if not any(isinstance(r, dict) and r.get("name") == "console" for r in receivers):
            receivers.append({"type": "console", "name": "console"})
        data["receivers"] = receivers
        route = dict(data.get("route") or {"receiver": "console"})
        # Console first (continue), then the user's routes, then a catch-all for the root
        # receiver: a matching child route would otherwise take the root's place.
        route["routes"] = [{"receiver": "console", "continue": True, "group_by": ["..."]},
                           *(route.get("routes") or []), {}]
        data["route"] = route
        return data

    @model_validator(mode="after")
    def _receivers_exist(self) -> AlertsConfig:
        names = [r.name for r in self.receivers]
        if len(set(names)) != len(names):
            raise AlertsConfigError("receiver names must be unique")
        if self.route.receiver is None:
            raise AlertsConfigError("the root route needs a receiver")

        def walk(route: RouteConfig) -> None:
            if route.receiver is not None and route.receiver not in names:
                raise AlertsConfigError(f"route refers to unknown receiver {route.receiver!r}")
            for child in route.routes:
                walk(child)

        walk(self.route)
        return self

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)
