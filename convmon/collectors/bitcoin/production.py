"""Block production beyond pools, from the collector's recent-block record: the share of
blocks per headquarters jurisdiction, and the template-decentralisation signals (blocks
whose coinbase carries a Stratum V2 tag, OCEAN/DATUM blocks), over the block windows.

In: the recorded blocks (newest ``max(windows)``), the curated `JurisdictionMap`. Out:
gauge families for ``/metrics``: ``convmon_btc_jurisdiction_share_ratio{jurisdiction,
window}``, ``convmon_btc_sv2_blocks_share_ratio{kind,window}`` (kind: pool, miner, empty,
any) and ``convmon_btc_ocean_datum_blocks_share_ratio{window}``. Unknown stays unknown:
a block whose pool and entity have no row counts as ``unknown``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from convmon.collectors.bitcoin.coinbase import sv2_tag
from convmon.collectors.bitcoin.jurisdictions import UNKNOWN, JurisdictionMap
from convmon.monitor.events import BitcoinBlock

_OCEAN = re.compile(r"ocean\.xyz|datum", re.IGNORECASE)


def production_metrics(
    blocks: Sequence[BitcoinBlock], windows: Sequence[int], places: JurisdictionMap
) -> list[Metric]:
    """``blocks`` oldest first; each window takes the newest N of them."""
    place = GaugeMetricFamily(
        "convmon_btc_jurisdiction_share_ratio",
        "Share of blocks per headquarters jurisdiction of the pool (or its parent entity), "
        "from convmon's curated, sourced table; unknown when it has no row.",
        labels=["jurisdiction", "window"],
    )
    sv2 = GaugeMetricFamily(
        "convmon_btc_sv2_blocks_share_ratio",
        "Share of blocks whose coinbase scriptSig carries a Stratum V2 tag (kind: pool-built "
        "/pool//, miner-declared //miner/ or /pool/miner/, empty ///, any).",
        labels=["kind", "window"],
    )
    ocean = GaugeMetricFamily(
        "convmon_btc_ocean_datum_blocks_share_ratio",
        "Share of blocks with an OCEAN or DATUM coinbase marker.", labels=["window"],
    )
    for n in sorted(windows):
        recent = blocks[-n:]
        if not recent:
            continue
        total = len(recent)
        win = str(n)
        places_n = Counter(
            UNKNOWN if b.pool == UNKNOWN else places.at(b.pool, b.entity, float(b.timestamp))
            for b in recent
        )
        for code, count in sorted(places_n.items()):
            place.add_metric([code, win], count / total)
        kinds = Counter(tag.kind for b in recent if (tag := sv2_tag(b.coinbase_tag)))
        for kind in ("pool", "miner", "empty"):
            sv2.add_metric([kind, win], kinds[kind] / total)
        sv2.add_metric(["any", win], sum(kinds.values()) / total)
        ocean.add_metric(
            [win], sum(1 for b in recent if _OCEAN.search(b.coinbase_tag)) / total
        )
    return [place, sv2, ocean]
