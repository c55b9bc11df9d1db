"""The event envelope and the typed payloads every package agrees on.

Collectors build events; the bus carries them as msgspec JSON (never pickle); rules and
alerts decode them. Payload types live here, in the core, because they are the contract
between packages that may not import each other.

Identity: ``Event.id`` is deterministic and globally unique (``btc:block:<hash>``,
``sol:payout:<signature>:<mint>``, ``eth:mint:<txhash>:<logindex>``), so publishing the same
fact twice is a no-op and two collector replicas can run side by side.

Amounts of tokens are exact: integer base units plus decimals, never floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec


class Amount(msgspec.Struct, frozen=True):
    """An exact token amount: ``units`` base units of a token with ``decimals`` decimals."""

    units: int
    decimals: int

    def to_decimal(self) -> Decimal:
        return Decimal(self.units).scaleb(-self.decimals)

    def __str__(self) -> str:
        return format(self.to_decimal(), "f")


class _Payload(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of all payloads; the tag (``kind``) names the event kind."""


class BlockRef(msgspec.Struct, frozen=True):
    height: int
    hash: str
    pool: str = "unknown"


class BitcoinBlock(_Payload, frozen=True, kw_only=True, tag="bitcoin.block"):
    """A block attributed to a mining pool. Position = height."""

    height: int
    hash: str
    prev_hash: str
    timestamp: int
    median_time: int | None = None
    bits: int | None = None
    difficulty: float
    tx_count: int
    size: int | None = None
    weight: int | None = None
    pool: str
    """Pool slug (mempool's convention: name without non-alphanumerics, lower-cased),
    ``unknown`` when nothing matched."""
    pool_name: str
    entity: str | None = None
    template_provider: str | None = None
    """The pool whose block template this block's pool mined on, as the stratum collector
    saw it when the block arrived (the pool itself when it builds its own); None without
    a stratum collector or for ``unknown`` blocks."""
    jurisdiction: str | None = None
    """Headquarters jurisdiction (ISO 3166-1 alpha-2) of the pool, else its parent entity,
    at the block's timestamp, from convmon's curated table; ``unknown`` when it has no
    row, None when the collector did not say (counted as unknown)."""
    match: Literal["address", "tag", "none"]
    coinbase_tag: str = ""
    payout_addresses: list[str] = msgspec.field(default_factory=list)
    coinbase_value_sats: int
    subsidy_sats: int
    fees_sats: int
    registry_version: str = ""


class BitcoinReorg(_Payload, frozen=True, kw_only=True, tag="bitcoin.reorg"):
    """Blocks disconnected from the best chain. Position = fork height (last common block)."""

    fork_height: int
    depth: int
    disconnected: list[BlockRef]
    new_tip_height: int
    new_tip_hash: str


class BitcoinAttribution(_Payload, frozen=True, kw_only=True, tag="bitcoin.attribution"):
    """A block re-attributed after the pool registry changed. Position = height."""

    height: int
    hash: str
    pool: str
    pool_name: str
    entity: str | None = None
    match: Literal["address", "tag", "none"]
    registry_version: str
    jurisdiction: str | None = None
    """As `BitcoinBlock.jurisdiction`, for the new pool at the block's timestamp."""


class BitcoinStratumJob(_Payload, frozen=True, kw_only=True, tag="bitcoin.stratum_job"):
    """A pool's stratum job, sampled: one per pool, previous block and template (the id
    carries all three). Position = height (0 when the job did not say)."""

    pool: str
    height: int | None = None
    prev_hash: str
    fingerprint: str | None = None
    """Hash of the merkle branches (`collectors.bitcoin.templates.fingerprint`); None for
    an empty template."""
    branches: int
    clean_jobs: bool = False
    received: float
    via: str
    """``mempool`` (websocket) or ``stratum`` (a direct Stratum v1 connection)."""
    provider: str | None = None
    """The pool's template provider when the job was seen (None: not assigned yet)."""
    coinbase_tag: str = ""
    payout_addresses: list[str] = msgspec.field(default_factory=list)
    markers: list[str] = msgspec.field(default_factory=list)
    sv2: str | None = None
    """Stratum V2 coinbase tag kind: pool, miner or empty; None when absent."""
    ocean_datum: bool = False


class BitcoinTemplateCluster(
    _Payload, frozen=True, kw_only=True, tag="bitcoin.template_cluster_changed"
):
    """A pool's template provider changed (it joined or left a provider's cluster).
    Position = the newest height of the evidence."""

    pool: str
    provider: str
    previous: str | None = None
    """The provider before: the pool itself while it built its own template, None when
    the pool had not been seen."""
    confidence: float
    matched_heights: int
    observed_heights: int
    members: list[str] = msgspec.field(default_factory=list)
    """The provider's cluster after the change, the provider first."""
    height: int = 0


class _StablecoinFlow(_Payload, frozen=True, kw_only=True):
    token: str
    chain: str
    """ethereum, base (any configured EVM chain), solana, tron"""
    track: str
    """regulated | offshore | machine-native (user-configurable label)."""
    contract: str
    """ERC-20 contract address or SPL mint."""
    amount: Amount
    counterparty: str | None = None
    tx: str
    log_index: int | None = None
    """Ethereum log index, or Solana instruction index."""
    method: str
    """Which event or instruction revealed it: Issue, Redeem, Mint, Transfer, mintTo, burn ..."""
    link: str = ""
    instruction_path: str | None = None
    """Solana: ``"3"`` for top-level instruction 3, ``"3.1"`` for an inner one under it."""


class StablecoinMint(_StablecoinFlow, frozen=True, kw_only=True, tag="stablecoin.mint"):
    """Tokens created. Position = block number (Ethereum) or slot (Solana)."""


class StablecoinBurn(_StablecoinFlow, frozen=True, kw_only=True, tag="stablecoin.burn"):
    """Tokens destroyed. Position = block number (Ethereum) or slot (Solana)."""


class StablecoinSupply(_StablecoinFlow, frozen=True, kw_only=True, tag="stablecoin.supply"):
    """Total supply reported by the chain (reconciliation). ``amount`` is the supply."""


class PaymentX402(_Payload, frozen=True, kw_only=True, tag="payment.x402"):
    """A machine payment settled through an x402 facilitator. EVM: a token ``Transfer``
    whose transaction carries the token's ``AuthorizationUsed`` (EIP-3009); Solana: an SPL
    ``TransferChecked`` whose fee payer is a facilitator. Position = block number or slot."""

    chain: str
    token: str
    contract: str
    """ERC-20 contract address or SPL mint."""
    payer: str
    payee: str
    amount: Amount
    facilitator: str
    """Facilitator name, or ``unknown`` when the sender is not a listed facilitator."""
    sender: str
    """``tx.from`` (EVM) or the fee payer (Solana)."""
    tx: str
    log_index: int | None = None
    """EVM: the ``Transfer`` log; Solana: None (see ``instruction_path``)."""
    instruction_path: str | None = None
    track: str = ""
    """The token's track label (regulated, offshore, machine-native, ...)."""
    link: str = ""


class Recipient(msgspec.Struct, frozen=True):
    owner: str
    units: int


class DepinPayout(_Payload, frozen=True, kw_only=True, tag="solana.depin_payout"):
    """Reward paid by a DePIN network in one transaction. Position = slot."""

    network: str
    token: str
    mint: str
    amount: Amount
    recipient_count: int
    recipients: list[Recipient]
    """Largest recipients first, capped (the count above is exact)."""
    signature: str
    block_time: int | None = None
    payout_kind: Literal["claim", "mint", "transfer"]
    link: str = ""
    instruction_units: int | None = None
    """Sum of the parsed transfer/mint instructions to the recipients (cross-check of
    ``amount``, which comes from balance deltas); None when no such instruction was seen."""
    evidence: Literal["balances", "instructions"] = "balances"
    """``instructions`` when balances did not move (a zero-amount distribution)."""
    expected_cadence_s: float | None = None
    """How often the network is expected to pay (from the collector's network registry), so
    absence rules judge silence against the same figure the user configured."""


class _DepinFlow(_Payload, frozen=True, kw_only=True):
    network: str
    token: str
    mint: str
    amount: Amount
    purpose: str
    """From the caller's instruction data where the program is in the network registry
    (``data_credits``, ``network_usage``, ``rewards`` ...), else ``unknown``."""
    program: str
    """The registered program that caused it, else the direct caller of the token program."""
    instruction: str | None = None
    """The caller's instruction name when the registry knows it."""
    credits: bool = False
    """A network's usage credits (Helium Data Credits), a series of their own: not the
    network's token, so not part of its emission, burn or revenue."""
    tx: str
    instruction_path: str
    """``"3"`` for top-level instruction 3, ``"3.1"`` for an inner one under it."""
    method: str
    """mintTo | mintToChecked | burn | burnChecked"""
    slot: int
    block_time: int | None = None
    link: str = ""


class DepinEmission(_DepinFlow, frozen=True, kw_only=True, tag="depin.emission"):
    """Tokens minted on a DePIN network's mint. Position = slot."""


class DepinBurn(_DepinFlow, frozen=True, kw_only=True, tag="depin.burn"):
    """Tokens burned on a DePIN network's mint. Position = slot."""


class DepinSupply(_Payload, frozen=True, kw_only=True, tag="depin.supply"):
    """Total supply of a DePIN mint reported by the chain (reconciliation). Position = slot."""

    network: str
    token: str
    mint: str
    amount: Amount
    credits: bool = False
    slot: int


class MarketPrice(_Payload, frozen=True, kw_only=True, tag="market.price"):
    """A sampled USD price per symbol: the median of fresh sources. Position = unix ms."""

    symbol: str
    price_usd: float
    sources: dict[str, float] = msgspec.field(default_factory=dict)
    stale_sources: list[str] = msgspec.field(default_factory=list)
    rejected_sources: list[str] = msgspec.field(default_factory=list)
    """Fresh sources left out as outliers (too far from the median of the others)."""


class CollectorStatus(_Payload, frozen=True, kw_only=True, tag="collector.status"):
    """A collector connected or disconnected. Position = unix ms."""

    collector: str
    connected: bool
    detail: str = ""


class OpsProcess(msgspec.Struct, frozen=True, kw_only=True):
    """A convmon process whose heartbeat was present when the sample was taken."""

    instance: str
    roles: list[str] = msgspec.field(default_factory=list)
    updated_at: float | None = None
    """The process's last heartbeat (its own clock)."""
    ttl_s: float | None = None
    """What was left of the heartbeat's TTL: a heartbeat that disappears before this ran out
    was deleted (a clean shutdown), one that disappears later expired (the process died)."""
    stopping: bool = False
    """The heartbeat says the process is shutting down (field ``stopping`` = ``1``): when
    it disappears, it stopped cleanly however long it took."""


class OpsComponent(msgspec.Struct, frozen=True, kw_only=True):
    """A supervised component of a live process, as its heartbeat reported it."""

    instance: str
    name: str
    role: str = ""
    state: str
    """starting | running | backoff | stopped"""
    up: bool
    restarts: int = 0
    last_error: str = ""
    since: float | None = None
    """When the component entered ``state`` (the process's clock)."""


class OpsGroup(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer group of the ``events`` or ``alerts`` stream."""

    stream: str
    """events | alerts"""
    group: str
    consumers: int = 0
    pending: int
    """Entries delivered and not yet acknowledged."""
    lag: int | None = None
    """Entries not yet delivered (Redis >= 7; None on 6.2 or when Redis cannot tell)."""
    behind_s: float = 0.0
    """Time span between the last entry delivered to the group and the newest entry of the
    stream (from their ids): grows while the group falls behind, on every Redis version."""
    oldest_pending_s: float | None = None
    """Age of the oldest unacknowledged entry (from its id), None when nothing is pending."""


class OpsRedisMemory(msgspec.Struct, frozen=True, kw_only=True):
    """The memory of one Redis primary (``INFO memory``), as ``/metrics`` reports it
    (`convmon.monitor.redismemory`)."""

    node: str
    """``primary`` on a standalone or Sentinel-managed server; ``host:port`` of each
    primary on a cluster."""
    used_memory: int
    maxmemory: int = 0
    """0: no limit set."""


class OpsSample(_Payload, frozen=True, kw_only=True, tag="ops.sample"):
    """The monitor's view of itself, sampled from Redis by the ops sampler: live processes
    and their components, consumer groups, dead-letter streams and Redis memory. One per
    sampling interval across all replicas (id ``ops:sample:<interval start>``). Position =
    unix ms."""

    interval_s: float
    processes: list[OpsProcess] = msgspec.field(default_factory=list)
    components: list[OpsComponent] = msgspec.field(default_factory=list)
    groups: list[OpsGroup] = msgspec.field(default_factory=list)
    dead_letters: dict[str, int] = msgspec.field(default_factory=dict)
    """Length of each dead-letter stream: ``events`` and ``alerts``."""
    redis: list[OpsRedisMemory] = msgspec.field(default_factory=list)
    """Memory of every Redis primary; empty when Redis refuses ``INFO`` (some managed
    offerings restrict it) and in samples of releases before it was added."""


Payload = (
    BitcoinBlock
    | BitcoinReorg
    | BitcoinAttribution
    | BitcoinStratumJob
    | BitcoinTemplateCluster
    | StablecoinMint
    | StablecoinBurn
    | StablecoinSupply
    | PaymentX402
    | DepinPayout
    | DepinEmission
    | DepinBurn
    | DepinSupply
    | MarketPrice
    | CollectorStatus
    | OpsSample
)

EVENT_KINDS: frozenset[str] = frozenset(
    t.__struct_config__.tag  # type: ignore[misc]
    for t in (
        BitcoinBlock,
        BitcoinReorg,
        BitcoinAttribution,
        BitcoinStratumJob,
        BitcoinTemplateCluster,
        StablecoinMint,
        StablecoinBurn,
        StablecoinSupply,
        PaymentX402,
        DepinPayout,
        DepinEmission,
        DepinBurn,
        DepinSupply,
        MarketPrice,
        CollectorStatus,
        OpsSample,
    )
)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope carried on the bus."""

    id: str
    chain: str
    """bitcoin | ethereum | solana | market | convmon"""
    source: str
    """Collector instance that observed it, e.g. ``bitcoin/esplora``."""
    observed_at: float
    """Unix seconds when the collector saw it."""
    occurred_at: float
    """Unix seconds of the fact itself (block time, or observed_at when unknown)."""
    position: int
    payload: Payload

    @property
    def kind(self) -> str:
        tag = type(self.payload).__struct_config__.tag
        assert isinstance(tag, str)
        return tag


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    """Decode an event; raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    return _decoder.decode(data)
