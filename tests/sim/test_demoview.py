"""The demo's live view fits the terminal, keeps the active alerts, and names pools."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from convmon.sim.demoview import Samples, pool_names, render


def samples() -> Samples:
    pools = ["foundryusa", "antpool", "viabtc", "f2pool", "marapool", "spiderpool",
             "luxor", "binancepool", "secpool", "braiinspool"]
    out: Samples = {
        "convmon_btc_pool_share_ratio": [
            ({"pool": p, "window": "1008"}, 0.3 / (i + 1)) for i, p in enumerate(pools)
        ],
        "convmon_btc_top_pools_share_ratio": [
            ({"window": w, "n": "2"}, 0.52) for w in ("144", "1008", "2016")
        ],
        "convmon_btc_hhi": [({"window": w}, 1900.0) for w in ("144", "1008", "2016")],
        "convmon_btc_nakamoto_coefficient": [({"window": w}, 2.0) for w in ("144", "1008")],
        "convmon_depin_window_paid_tokens": [
            ({"network": n, "token": "T", "window": "24h"}, 1e6) for n in ("helium", "nosana")
        ],
        "convmon_stablecoin_net_issuance_tokens": [
            ({"token": t, "chain": "ethereum", "window": "24h"}, 2.5e8) for t in ("USDT", "USDC")
        ],
        "convmon_price_usd": [({"symbol": s}, 1.0) for s in ("BTC", "USDT", "USDC", "SOL")],
        "convmon_payments_x402_total": [
            ({"chain": "base", "facilitator": f}, n) for f, n in (("coinbase", 812.0),
                                                                  ("unknown", 40.0))
        ],
        "convmon_payments_x402_unique_payers": [
            ({"chain": "base", "facilitator": "coinbase", "window": "24h"}, 57.0)
        ],
    }
    return out


def alerts(n: int) -> list[dict[str, object]]:
    return [
        {"state": "firing", "starts_at": i, "labels": {"alertname": f"Alert{i}",
                                                       "severity": "warning"},
         "annotations": {"summary": f"something number {i} happened " * 3}}
        for i in range(n)
    ]


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (200, 50)])
@pytest.mark.parametrize("n_alerts", [1, 4, 30])
async def test_the_view_fits_and_always_shows_the_alerts(
    width: int, height: int, n_alerts: int
) -> None:
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      color_system=None)
    console.print(render(samples(), alerts(n_alerts), console, await pool_names()))
    lines = console.export_text().rstrip("\n").splitlines()
    assert len(lines) <= height, "\n".join(lines)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "Active alerts" in text and "Alert0" in text
    if n_alerts > 5:
        assert "more" in text  # what does not fit is counted, not silently cut
    if height >= 40:
        assert "Foundry USA" in text and "foundryusa" not in text  # pools by name
    if height >= 50:
        assert "x402 payments" in text and "coinbase" in text and "812" in text
