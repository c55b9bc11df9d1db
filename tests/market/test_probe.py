"""``convmon market probe`` against local venues with partial listings."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from convmon.collectors.market.plugin import PLUGIN
from convmon.collectors.market.probe import probe_sources
from convmon.sim.exchanges import CoinbaseFeedServer, CoinGeckoServer, KrakenFeedServer
from tests.market.conftest import MakeConfig


async def test_probe_reports_prices_refusals_and_silence(
    kraken: KrakenFeedServer, coingecko: CoinGeckoServer, make_config: MakeConfig,
    tmp_path: Path,
) -> None:
    coinbase = CoinbaseFeedServer(listed={"BTC-USD"})
    await coinbase.start()
    try:
        coinbase.prices["BTC-USD"] = 100_000.0
        kraken.prices["USDT/USD"] = 0.9995
        coingecko.set_price("bitcoin", 100_100.0)
        cfg = make_config(coinbase={"url": coinbase.url})
        # The probe listens for a fixed window by design; the default one leaves a loaded
        # machine time to connect and receive the first ticks.
        report = await probe_sources(cfg)
        by = {
            (symbol, source): (r.outcome, r.price)
            for symbol, results in report.results.items() for source, r in results.items()
        }
        assert by[("BTC", "coinbase")] == ("price", 100_000.0)
        assert by[("USDT", "coinbase")] == ("refused", None)
        assert by[("USDT", "kraken")] == ("price", 0.9995)
        assert by[("BTC", "kraken")] == ("silent", None)  # listed, but no trade seen
        assert by[("BTC", "coingecko")] == ("price", 100_100.0)
        assert by[("HONEY", "coingecko")] == ("refused", None)

        # The command loads the whole configuration (every plugin), so only its wiring is
        # checked here; the probe itself is the function above.
        app = typer.Typer()
        assert PLUGIN.cli is not None
        PLUGIN.cli(app)
        result = CliRunner().invoke(app, ["market", "probe", "--help"])
        assert result.exit_code == 0, result.output
        assert "--seconds" in result.output
    finally:
        await coinbase.close()
