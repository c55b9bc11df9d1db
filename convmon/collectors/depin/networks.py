"""The DePIN network registry: what to watch and what counts as a reward, per network.

Defaults follow ../DESIGN.md (program ids and mints on mainnet). Render and io.net have no
public reward program: their payouts are transfers out of distribution wallets the user
lists under ``wallets`` (empty by default, so those networks watch nothing until
configured). Every field can be overridden in ``collectors.depin.networks.<name>``.
"""

from __future__ import annotations

from pydantic import Field

from convmon.collectors.solana.supplyflow import ProgramPurpose
from convmon.monitor.config import Model

HOUR = 3600.0
DAY = 24 * HOUR

LAZY_DISTRIBUTOR = "1azyuavdMyvsivtNxPoz6SucD18eDHeXzFCUPq5XU7w"
CIRCUIT_BREAKER = "circAbx64bbsscPbQzZAUvuXpHqrCe6fLMzc2uKXz9g"
HNT = "hntyVP6YFm1Hg25TN9WGLqM12b8TQmcknKrdu1oxWux"
IOT = "iotEVVZLEywoTn1QdwNPddxPWszn3zFhEot3MfL9fns"
MOBILE = "mb1eu7TzEc71KxDpsmsKoucSSuuoGLv1drys1oP2jh6"
HONEY = "4vMsoUT2BWatFweudnQM1xedRLfJgJ7hswhcpz4xgBTy"
HIVEMAPPER_PAYMENT = "BNH1dUp3ExFbgo3YctSqQbJXRFn3ffkwbcmSas8azfaW"
HIVEMAPPER_REWARD = "EEjwuvCMVYjgHUeX1BM9qmUog59Pft88c3jbt2ATwcJw"
NOS = "nosXBVoaCTtYdLvKY6Csb4AC8JCdQKKAaWYtx2ZMoo7"
NOSANA_JOBS = "nosJhNRqr2bc9g1nfGDcXXTXvYUmxD4cVwy2pMWhrYM"
NOSANA_REWARDS = "nosRB8DUV67oLNrL45bo2pFLrmsWPiewe2Lk2DRNYCp"
RENDER = "rndrizKT3MK1iimdxRdWabcF7Zg7AR5T4nud4EkHBof"
IO = "BZLbGTNCSFfoth2GYDtwr7e4imWzpR5jqcUuGEwr646K"
HELIUM_SUB_DAOS = "hdaoVTCqhfHHo75XdAMxBKdUqvq1i5bF23sisBqVgGR"
HELIUM_DATA_CREDITS = "credMBJhYFzfn7NxBMdU4aUqFggAjgztaCcv2Fo6fPT"
DC = "dcuc8Amr83Wz27ZkQ2K9NS6r8zRpf1J6cvArEBDZDmm"


class RewardMint(Model):
    mint: str
    token: str
    decimals: int = Field(ge=0, le=18)


class SupplyMint(Model):
    """A mint whose every mint and burn instruction is counted (token supply flows)."""

    mint: str
    token: str
    decimals: int = Field(ge=0, le=18)
    credits: bool = False
    """Usage credits (Helium Data Credits): their own series, not the network's token."""


class NetworkConfig(Model):
    """One DePIN network."""

    enabled: bool = True
    watch: list[str] = Field(default_factory=list)
    """Programs (or any address) to ``logsSubscribe`` to, one subscription each."""
    wallets: list[str] = Field(default_factory=list)
    """Distribution wallets (owners): watched, excluded as recipients, and a transaction
    counts only when one of them paid out (its balance of the reward mint went down)."""
    reward_mints: list[RewardMint]
    require_programs: list[str] = Field(default_factory=list)
    """A transaction counts only if it invokes one of these (empty: any watched tx)."""
    claim_programs: list[str] = Field(default_factory=list)
    """Payouts through these programs are reported as ``claim`` (unless minted)."""
    exclude: list[str] = Field(default_factory=list)
    """Owners or token accounts that are never recipients (escrows, treasuries, vaults)."""
    exclude_off_curve_owners: bool = False
    """Treat owners that are program-derived addresses (off the ed25519 curve) as
    escrows/vaults. Right for networks paying people's wallets; wrong where rewards may go
    to program accounts (Helium's custom destinations)."""
    expected_cadence_s: float = Field(default=DAY, gt=0)
    description: str = ""
    mints: list[SupplyMint] = Field(default_factory=list)
    """Mints whose emissions (``mintTo``) and burns (``burn``) are tracked."""
    programs: list[ProgramPurpose] = Field(default_factory=list)
    """What a mint or burn means when one of these programs' instructions caused it (the
    built-in entries; setting this replaces them)."""
    extra_programs: list[ProgramPurpose] = Field(default_factory=list)
    """Your entries, added to ``programs``: name the purpose of other programs'
    instructions without code."""

    def purposes(self) -> list[ProgramPurpose]:
        return [*self.programs, *self.extra_programs]

    def addresses(self) -> list[str]:
        return list(dict.fromkeys([*self.watch, *self.wallets]))


def default_networks() -> dict[str, NetworkConfig]:
    return {
        "helium": NetworkConfig(
            watch=[LAZY_DISTRIBUTOR, CIRCUIT_BREAKER],
            reward_mints=[
                RewardMint(mint=HNT, token="HNT", decimals=8),
                RewardMint(mint=IOT, token="IOT", decimals=6),
                RewardMint(mint=MOBILE, token="MOBILE", decimals=6),
            ],
            require_programs=[LAZY_DISTRIBUTOR],
            claim_programs=[LAZY_DISTRIBUTOR],
            expected_cadence_s=DAY,
            description="lazy-distributor claims paid through the circuit breaker (HNT since "
            "HIP-138; IOT/MOBILE kept for history)",
            mints=[
                SupplyMint(mint=HNT, token="HNT", decimals=8),
                SupplyMint(mint=IOT, token="IOT", decimals=6),
                SupplyMint(mint=MOBILE, token="MOBILE", decimals=6),
                SupplyMint(mint=DC, token="DC", decimals=0, credits=True),
            ],
            programs=helium_programs(),
        ),
        "hivemapper": NetworkConfig(
            watch=[HIVEMAPPER_REWARD, HIVEMAPPER_PAYMENT],
            reward_mints=[RewardMint(mint=HONEY, token="HONEY", decimals=9)],
            mints=[SupplyMint(mint=HONEY, token="HONEY", decimals=9)],
            require_programs=[HIVEMAPPER_REWARD, HIVEMAPPER_PAYMENT],
            expected_cadence_s=7 * DAY,
            description="weekly HONEY MintTo into contributors' token accounts",
        ),
        "nosana": NetworkConfig(
            watch=[NOSANA_JOBS, NOSANA_REWARDS],
            reward_mints=[RewardMint(mint=NOS, token="NOS", decimals=6)],
            mints=[SupplyMint(mint=NOS, token="NOS", decimals=6)],
            require_programs=[NOSANA_JOBS, NOSANA_REWARDS],
            exclude_off_curve_owners=True,
            expected_cadence_s=DAY,
            description="NOS paid per job from the market vault (vaults are PDAs: excluded)",
        ),
        "render": NetworkConfig(
            reward_mints=[RewardMint(mint=RENDER, token="RENDER", decimals=8)],
            mints=[SupplyMint(mint=RENDER, token="RENDER", decimals=8)],
            expected_cadence_s=7 * DAY,
            description="no public reward program: list distribution wallets under `wallets`",
        ),
        "ionet": NetworkConfig(
            reward_mints=[RewardMint(mint=IO, token="IO", decimals=8)],
            mints=[SupplyMint(mint=IO, token="IO", decimals=8)],
            expected_cadence_s=DAY,
            description="no public reward program: list distribution wallets under `wallets`",
        ),
    }


def helium_programs() -> list[ProgramPurpose]:
    """Helium's data_credits program (HNT burned for Data Credits, Data Credits spent on
    network usage) and the sub-DAOs' epoch emissions."""
    return [
        ProgramPurpose(
            program=HELIUM_DATA_CREDITS, instruction="mint_data_credits_v0", purpose="data_credits"
        ),
        ProgramPurpose(
            program=HELIUM_DATA_CREDITS,
            instruction="burn_delegated_data_credits_v0",
            purpose="network_usage",
        ),
        ProgramPurpose(
            program=HELIUM_DATA_CREDITS,
            instruction="burn_without_tracking_v0",
            purpose="burn_without_tracking",
        ),
        ProgramPurpose(program=HELIUM_SUB_DAOS, instruction="issue_rewards_v0", purpose="rewards"),
    ]
