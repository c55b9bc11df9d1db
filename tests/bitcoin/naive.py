"""mempool's pool matching as a plain loop: the independent baseline the attribution tests
cross-check against and the benchmark measures against (it compiles nothing ahead)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from convmon.collectors.bitcoin.attribution import UNKNOWN_SLUG, PoolRegistry


def naive_match(registry: PoolRegistry, scriptsig_hex: str, addresses: Sequence[str]) -> str:
    """The first pool (list order) with a payout address among ``addresses`` or a tag
    matching the scriptSig decoded as Latin-1, else unknown."""
    text = bytes.fromhex(scriptsig_hex).decode("latin-1")
    for pool in registry.pools:
        if any(a in addresses for a in pool.addresses):
            return pool.slug
        for tag in pool.tags:
            if re.search(tag, text, re.IGNORECASE):
                return pool.slug
    return UNKNOWN_SLUG
