"""Miner economics from block rewards, difficulty and the BTC price (pure functions).

Hashprice follows DESIGN.md: (subsidy + fees over the window) x BTC price / network
hashrate, in USD per PH/s per day. The window's rewards are turned into a daily figure
with the protocol's block rate (86,400 s / 600 s = 144 blocks a day), the same 600 s that
turns difficulty into hashrate, so a window of 144 blocks is taken at face value:

    hashprice = mean reward per block (BTC) x 144 x price / (hashrate H/s / 1e15)

Revenue per MWh for a fleet at E J/TH: one TH/s at E J/TH draws E x 24 / 1e6 MWh a day, so
revenue = (hashprice / 1000, per TH/s per day) / (E x 24 / 1e6).
"""

from __future__ import annotations

TARGET_BLOCK_S = 600.0
BLOCKS_PER_DAY = 86_400.0 / TARGET_BLOCK_S
SATS_PER_BTC = 100_000_000
HASHES_PER_PH = 1e15


def network_hashrate(difficulty: float) -> float:
    """Estimated network hashrate in H/s: difficulty x 2^32 / 600 s."""
    return difficulty * 2**32 / TARGET_BLOCK_S


def hashprice_usd_per_phs_day(
    reward_sats: int, blocks: int, btc_price_usd: float | None, hashrate_hs: float | None
) -> float | None:
    """USD earned per PH/s per day; None when an input is missing."""
    if blocks <= 0 or btc_price_usd is None or not hashrate_hs or hashrate_hs <= 0:
        return None
    btc_per_day = reward_sats / blocks * BLOCKS_PER_DAY / SATS_PER_BTC
    return btc_per_day * btc_price_usd / (hashrate_hs / HASHES_PER_PH)


def revenue_usd_per_mwh(
    hashprice_phs_day: float | None, efficiency_j_per_th: float
) -> float | None:
    """Mining revenue per MWh of electricity for a fleet at ``efficiency_j_per_th``."""
    if hashprice_phs_day is None:
        return None
    per_th_day = hashprice_phs_day / 1000.0
    mwh_per_th_day = efficiency_j_per_th * 24.0 / 1e6
    return per_th_day / mwh_per_th_day


def efficiency_label(efficiency_j_per_th: float) -> str:
    """``15.0`` → ``"15"``, ``17.5`` → ``"17.5"`` (snapshot keys and metric labels)."""
    return f"{efficiency_j_per_th:g}"
