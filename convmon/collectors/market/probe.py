"""``convmon market probe``: ask every configured source once which symbols it quotes.

Listings change (products are added, renamed, delisted); this checks the configured
product ids against the live venues without Redis: connect, subscribe, collect for a
few seconds, and report per symbol and source the price seen, a refusal, or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from convmon.collectors.market.config import MarketConfig
from convmon.collectors.market.errors import MalformedMessage
from convmon.collectors.market.parsing import (
    FeedMessage,
    coinbase_subscribe,
    kraken_subscribe,
    parse_coinbase,
    parse_coingecko,
    parse_kraken,
)

Outcome = Literal["price", "refused", "silent", "unreachable"]


@dataclass
class ProbeResult:
    outcome: Outcome
    price: float | None = None
    detail: str = ""


@dataclass
class ProbeReport:
    results: dict[str, dict[str, ProbeResult]] = field(default_factory=dict)
    """symbol → source → result, for every configured (symbol, source) pair."""
    garbage: dict[str, int] = field(default_factory=dict)


async def probe_sources(cfg: MarketConfig, seconds: float = 10.0) -> ProbeReport:
    report = ProbeReport()
    async with aiohttp.ClientSession() as session:
        jobs = []
        if cfg.coinbase.enabled:
            jobs.append(_probe_ws(
                session, "coinbase", cfg.coinbase.url.reveal(), cfg, seconds, report,
                lambda products: coinbase_subscribe(products, heartbeat=False), parse_coinbase,
            ))
        if cfg.kraken.enabled:
            jobs.append(_probe_ws(
                session, "kraken", cfg.kraken.url.reveal(), cfg, seconds, report,
                kraken_subscribe, parse_kraken,
            ))
        if cfg.coingecko.enabled:
            jobs.append(_probe_coingecko(session, cfg, report))
        await asyncio.gather(*jobs)
    return report


def _record(report: ProbeReport, symbol: str, source: str, result: ProbeResult) -> None:
    report.results.setdefault(symbol, {})[source] = result


async def _probe_ws(
    session: aiohttp.ClientSession, source: str, url: str, cfg: MarketConfig, seconds: float,
    report: ProbeReport, subscribe: Callable[[list[str]], list[str]],
    parse: Callable[[bytes | str], FeedMessage],
) -> None:
    products = cfg.products(source)
    for symbol in products.values():
        _record(report, symbol, source, ProbeResult("silent"))
    pending = set(products)
    try:
        async with asyncio.timeout(seconds):
            ws = await session.ws_connect(url)
            try:
                # One product per request: Coinbase refuses a whole request for one bad id.
                for product in sorted(products):
                    for message in subscribe([product]):
                        await ws.send_str(message)
                while pending:
                    msg = await ws.receive()
                    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        break
                    try:
                        parsed = parse(msg.data)
                    except MalformedMessage:
                        report.garbage[source] = report.garbage.get(source, 0) + 1
                        continue
                    if parsed.kind == "error" and parsed.refused in products:
                        symbol = products[parsed.refused]
                        _record(report, symbol, source, ProbeResult("refused", None, parsed.detail))
                        pending.discard(parsed.refused)
                    for product, price in parsed.prices:
                        if product in products:
                            _record(report, products[product], source, ProbeResult("price", price))
                            pending.discard(product)
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()
    except TimeoutError:
        pass
    except (aiohttp.ClientError, OSError) as exc:
        for symbol in products.values():
            _record(report, symbol, source, ProbeResult("unreachable", None, str(exc)))


async def _probe_coingecko(
    session: aiohttp.ClientSession, cfg: MarketConfig, report: ProbeReport
) -> None:
    ids = cfg.products("coingecko")
    headers: dict[str, str] = {}
    if cfg.coingecko.api_key is not None:
        headers[cfg.coingecko.api_key_header] = cfg.coingecko.api_key.reveal()
    url = cfg.coingecko.url.rstrip("/") + "/api/v3/simple/price"
    params = {"ids": ",".join(sorted(ids)), "vs_currencies": "usd"}
    try:
        async with session.get(
            url, params=params, headers=headers,
            timeout=aiohttp.ClientTimeout(total=cfg.coingecko.timeout_s),
        ) as resp:
            body = await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        for symbol in ids.values():
            _record(report, symbol, "coingecko", ProbeResult("unreachable", None, str(exc)))
        return
    seen: dict[str, float] = {}
    if status == 200:
        try:
            seen = dict(parse_coingecko(body).prices)
        except MalformedMessage:
            report.garbage["coingecko"] = 1
    for coin, symbol in ids.items():
        if coin in seen:
            _record(report, symbol, "coingecko", ProbeResult("price", seen[coin]))
        elif status == 200:
            _record(report, symbol, "coingecko", ProbeResult("refused", None, "unknown id"))
        else:
            _record(report, symbol, "coingecko", ProbeResult("unreachable", None, f"HTTP {status}"))
