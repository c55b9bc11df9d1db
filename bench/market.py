"""Benchmark: exchange ticks per second through parse -> price book (median, outliers).

Pipeline measured per tick, as the collector does it: decode the websocket frame
(Coinbase or Kraken v2 ticker), map the product to its symbol, update the price book,
and compute the symbol's quote (staleness, outlier rejection, median). Baseline, in the
same run: ``json.loads`` of the very same frames and nothing else. Prints both rates and
their ratio.

    PYTHONPATH=. python bench/market.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from convmon.collectors.market.book import PriceBook
from convmon.collectors.market.config import default_symbols
from convmon.collectors.market.parsing import FeedMessage, parse_coinbase, parse_kraken
from convmon.sim.exchanges import CoinbaseFeedServer, KrakenFeedServer
from convmon.sim.scenarios.market import START_PRICES


def make_ticks(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    coinbase, kraken = CoinbaseFeedServer(), KrakenFeedServer()
    venues = [
        (source, product, symbol)
        for symbol, where in default_symbols().items()
        for source, product in (("coinbase", where.coinbase), ("kraken", where.kraken))
        if product
    ]
    ticks: list[tuple[str, bytes]] = []
    for _ in range(n):
        source, product, symbol = rng.choice(venues)
        price = START_PRICES[symbol] * (1 + rng.gauss(0, 0.001))
        server = coinbase if source == "coinbase" else kraken
        ticks.append((source, json.dumps(server.ticker_message(product, price, "update")).encode()))
    return ticks


def run_pipeline(ticks: list[tuple[str, bytes]]) -> int:
    parsers: dict[str, Callable[[bytes | str], FeedMessage]] = {
        "coinbase": parse_coinbase, "kraken": parse_kraken,
    }
    products = {
        source: {p: s for s, w in default_symbols().items() if (p := w.product(source))}
        for source in parsers
    }
    book = PriceBook(stale_after_s=180, outlier_pct=3.0)
    for symbol, price in START_PRICES.items():  # a third source so outlier checks run
        book.update(symbol, "coingecko", price, at=0.0)
    quotes = 0
    now = 1.0
    for source, raw in ticks:
        msg = parsers[source](raw)
        for product, price in msg.prices:
            symbol = products[source][product]
            book.update(symbol, source, price, now)
            if book.quote(symbol, now).price is not None:
                quotes += 1
    return quotes


def run_baseline(ticks: list[tuple[str, bytes]]) -> int:
    decoded = 0
    for _, raw in ticks:
        if json.loads(raw):
            decoded += 1
    return decoded


def best_rate(fn: Callable[[list[tuple[str, bytes]]], int], ticks: list[tuple[str, bytes]],
              repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        assert fn(ticks) == len(ticks)
        best = min(best, time.perf_counter() - start)
    return len(ticks) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    n, repeats = (20_000, 3) if args.quick else (200_000, 5)
    ticks = make_ticks(n)
    baseline = best_rate(run_baseline, ticks, repeats)
    pipeline = best_rate(run_pipeline, ticks, repeats)
    print(f"ticks: {n}, best of {repeats}")
    print(f"baseline json.loads:              {baseline:>12,.0f} ticks/s")
    print(f"parse -> price book -> quote:     {pipeline:>12,.0f} ticks/s")
    print(f"ratio pipeline/baseline:          {pipeline / baseline:>12.2f}")


if __name__ == "__main__":
    main()
