"""Raw aggregate state (as read from Redis) → the CEL roots of CONTRACTS §3.

In: decoded documents of the snapshot scripts and hashes, the configuration, ``now``.
Out: plain nested dicts of str/int/float/bool/None. Shares are 0..1, token amounts floats
in token units, times unix seconds. A figure whose inputs are missing is None, never 0.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from convmon.monitor import concentration
from convmon.rules.aggregates import economics
from convmon.rules.aggregates.config import AggregatesConfig
from convmon.rules.aggregates.encoding import SCALE, ops_component_key, scaled_to_tokens
from convmon.rules.aggregates.providers import jurisdiction_stats, provider_stats

UNKNOWN = concentration.UNKNOWN
PEG_USD = 1.0


@dataclass(frozen=True)
class Price:
    price: float
    time: float
    sources: list[str]


@dataclass
class Prices:
    """Last price per symbol; `usd` answers only with a fresh one."""

    by_symbol: dict[str, Price] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Prices:
        out: dict[str, Price] = {}
        for k, v in raw.items():
            sym = k.decode() if isinstance(k, bytes) else k
            text = v.decode() if isinstance(v, bytes) else v
            t, p, srcs = [*text.split("|"), "", "", ""][:3]
            out[sym] = Price(float(p), float(t), [s for s in srcs.split(",") if s])
        return cls(out)

    def fresh(self, symbol: str, now: float, staleness_s: float) -> float | None:
        p = self.by_symbol.get(symbol)
        if p is None or now - p.time > staleness_s:
            return None
        return p.price


def _window_block_stats(
    w: dict[str, float], n: int, longest: dict[str, int], current: dict[str, Any],
    hashrate: float | None,
) -> dict[str, Any]:
    pools = {k[2:]: int(v) for k, v in w.items() if k.startswith("p:") and v > 0}
    entities = {k[2:]: int(v) for k, v in w.items() if k.startswith("e:") and v > 0}
    empties = {k[2:]: int(v) for k, v in w.items() if k.startswith("x:") and v > 0}
    blocks = int(w.get("blocks", 0))
    pool_shares = concentration.shares(pools)
    entity_shares = concentration.shares(entities)
    cur_pool = current.get("pool")
    cur_len = min(int(current.get("length") or 0), n)
    return {
        "blocks": blocks,
        "unknown_blocks": pools.get(UNKNOWN, 0),
        "top1_share": concentration.top_share(pools, 1),
        "top2_share": concentration.top_share(pools, 2),
        "top3_share": concentration.top_share(pools, 3),
        "hhi": concentration.hhi(pools),
        "nakamoto": concentration.nakamoto(pools),
        "empty_blocks": int(w.get("empty", 0)),
        "entity_top2_share": concentration.top_share(entities, 2),
        "entity_nakamoto": concentration.nakamoto(entities),
        "entity_hhi": concentration.hhi(entities),
        "fees_sats_mean": (w.get("fees", 0) / blocks) if blocks else None,
        "subsidy_sats_mean": (w.get("subsidy", 0) / blocks) if blocks else None,
        "pools": {
            pool: {
                "blocks": count,
                "share": pool_shares.get(pool, 0.0),
                "longest_run": int(longest.get(pool, 0)),
                "current_run": cur_len if pool == cur_pool else 0,
                "hashrate_hs": (
                    pool_shares.get(pool, 0.0) * hashrate if hashrate is not None else None
                ),
                "empty_blocks": empties.get(pool, 0),
            }
            for pool, count in pools.items()
        },
        "entities": {
            e: {"blocks": c, "share": entity_shares.get(e, 0.0)} for e, c in entities.items()
        },
    }


def btc_view(
    raw: dict[str, Any], cfg: AggregatesConfig, now: float,
    template_providers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``template_providers``: pool -> template provider (`providers`), None or empty
    when no stratum collector reported any; the windows count each block by the provider
    it carried (`providers`)."""
    meta = raw.get("meta") or {}
    tip = raw.get("tip")
    rec = raw.get("tip_rec")
    fields = rec.split("|") if isinstance(rec, str) else None
    difficulty = float(fields[6]) if fields else None
    hashrate = economics.network_hashrate(difficulty) if difficulty is not None else None
    tip_time = int(fields[5]) if fields else None
    runs = raw.get("runs") or {}
    longest = runs.get("longest") or {}
    current = runs.get("current") or {}
    windows_raw = raw.get("windows") or {}
    windows = {
        str(n): _window_block_stats(
            windows_raw.get(str(n)) or {}, n, longest.get(str(n)) or {}, current, hashrate
        )
        for n in cfg.block_windows
    }
    mapping = template_providers or {}
    for n, stats in windows.items():
        counts = windows_raw.get(n) or {}
        stats.update(provider_stats(counts))
        stats.update(jurisdiction_stats(counts))
    return {
        "template_providers_known": bool(mapping),
        "tip_height": int(tip) if tip is not None else None,
        "tip_hash": fields[7] if fields else None,
        "tip_time": tip_time,
        "last_block_age_s": (now - tip_time) if tip_time is not None else None,
        "difficulty": difficulty,
        "hashrate_hs": hashrate,
        "subsidy_sats": int(fields[3]) if fields else None,
        "reorgs_total": int(meta.get("reorgs_total", 0)),
        "last_reorg_depth": int(meta.get("last_reorg_depth", 0)),
        "last_reorg_time": float(meta["last_reorg_time"]) if "last_reorg_time" in meta else None,
        "windows": windows,
        "current_run": {
            "pool": current.get("pool") if tip is not None else None,
            "length": int(current.get("length") or 0) if tip is not None else 0,
        },
    }


def _stable_usd(symbol: str, prices: Prices, now: float, cfg: AggregatesConfig) -> float:
    price = prices.fresh(symbol, now, cfg.price_staleness_s)
    if price is not None:
        return price
    return PEG_USD


def _window_fields(s: dict[str, Any], cfg: AggregatesConfig) -> dict[str, int]:
    return {name: int(s.get(f"s{secs}", "0")) for name, secs in cfg.time_windows.items()}


def stablecoin_view(
    raw: dict[str, Any], last: dict[str, float], prices: Prices, cfg: AggregatesConfig,
    now: float,
) -> dict[str, Any]:
    series: dict[str, Any] = raw.get("series") or {}
    tokens: dict[str, dict[str, Any]] = {}
    sums: dict[str, dict[str, dict[str, int]]] = {}
    for name, s in series.items():
        family, _, key = name.partition(":")
        if family not in ("mint", "burn"):
            continue
        meta = json.loads(s.get("meta") or "{}")
        entry = tokens.setdefault(key, {
            "token": meta.get("token"), "chain": meta.get("chain"), "track": meta.get("track"),
        })
        if family == "mint":
            entry["track"] = meta.get("track", entry["track"])
            entry["largest_mint_24h"] = scaled_to_tokens(s.get("largest"))
        sums.setdefault(key, {})[family] = _window_fields(s, cfg)
        entry[f"{'minted' if family == 'mint' else 'burned'}_total"] = scaled_to_tokens(
            s.get("tot")
        )
    for key, s in (raw.get("supply") or {}).items():
        meta = json.loads(s.get("meta") or "{}")
        tokens.setdefault(key, {
            "token": meta.get("token"), "chain": meta.get("chain"), "track": meta.get("track"),
        })
    tracks: dict[str, dict[str, float]] = {}
    for key, entry in tokens.items():
        mint = sums.get(key, {}).get("mint", {})
        burn = sums.get(key, {}).get("burn", {})
        for name in cfg.time_windows:
            m, b = mint.get(name, 0), burn.get(name, 0)
            entry[f"minted_{name}"] = scaled_to_tokens(m)
            entry[f"burned_{name}"] = scaled_to_tokens(b)
            entry[f"net_{name}"] = float((m - b) / 10**SCALE)
        entry.setdefault("largest_mint_24h", 0.0)
        entry.setdefault("minted_total", 0.0)
        entry.setdefault("burned_total", 0.0)
        usd = _stable_usd(str(entry["token"]), prices, now, cfg)
        entry["net_24h_usd"] = entry["net_24h"] * usd
        track = str(entry["track"])
        t = tracks.setdefault(track, {f"minted_{n}_usd": 0.0 for n in cfg.time_windows})
        for name in cfg.time_windows:
            t[f"minted_{name}_usd"] += entry[f"minted_{name}"] * usd
        entry["supply"], entry["supply_drift"] = _supply(raw.get("supply", {}).get(key))
    for name in cfg.time_windows:
        total = sum(t[f"minted_{name}_usd"] for t in tracks.values())
        for t in tracks.values():
            t[f"share_{name}"] = t[f"minted_{name}_usd"] / total if total > 0 else 0.0
    return {
        "tokens": tokens,
        "tracks": tracks,
        "last_event_time": {c: last.get(c) for c in ("ethereum", "solana", *sorted(
            set(last) - {"ethereum", "solana"}))},
    }


def _supply(s: dict[str, str] | None) -> tuple[float | None, float | None]:
    """Reported supply, and its change since the previous sample minus the net issuance
    tracked over the same interval (0 when every mint and burn was seen)."""
    if not s or "supply" not in s:
        return None, None
    supply = int(s["supply"])
    if "prev_supply" not in s:
        return scaled_to_tokens(supply), None
    reported = supply - int(s["prev_supply"])
    tracked = (int(s["minted"]) - int(s["burned"])) - (
        int(s["prev_minted"]) - int(s["prev_burned"])
    )
    return scaled_to_tokens(supply), float((reported - tracked) / 10**SCALE)


def depin_view(
    raw: dict[str, Any], last: dict[str, float], prices: Prices, cfg: AggregatesConfig,
    now: float,
) -> dict[str, Any]:
    networks: dict[str, dict[str, Any]] = {}

    def network(name: str) -> dict[str, Any]:
        if name not in networks:
            t = last.get(name)
            networks[name] = {
                "tokens": {},
                "recipients_24h": 0,
                "payouts_24h": 0,
                "payouts_total": 0,
                "last_payout_time": t,
                "since_last_payout_s": (now - t) if t is not None else None,
                "expected_cadence_s": cfg.depin_cadence_s.get(name),
            }
        return networks[name]

    for name in cfg.depin_cadence_s:
        network(name)
    day = cfg.time_windows["24h"]
    for name, s in (raw.get("series") or {}).items():
        family, _, key = name.partition(":")
        if family == "dpn":
            n = network(key)
            # The collector's network registry is the source of the cadence; the
            # aggregates' own setting only covers payouts that do not carry one.
            cadence = json.loads(s.get("meta") or "{}").get("cadence_s")
            if cadence is not None:
                n["expected_cadence_s"] = cadence
            n["payouts_24h"] = int(s.get(f"n{day}", 0))
            n["payouts_total"] = int(s.get("ntot", 0))
            n["recipients_24h"] = int((raw.get("recipients") or {}).get(key, 0))
        elif family == "dp":
            net, _, token = key.partition("/")
            sums = _window_fields(s, cfg)
            entry: dict[str, Any] = {f"paid_{w}": scaled_to_tokens(v) for w, v in sums.items()}
            entry["daily_mean_7d"] = entry["paid_7d"] / 7.0
            entry["paid_total"] = scaled_to_tokens(s.get("tot"))
            price = prices.fresh(token, now, cfg.price_staleness_s)
            for w in cfg.time_windows:
                entry[f"paid_{w}_usd"] = entry[f"paid_{w}"] * price if price is not None else None
            network(net)["tokens"][token] = entry
    return {"networks": networks}


def market_view(
    prices: Prices, sources: dict[str, str], cfg: AggregatesConfig, now: float
) -> dict[str, Any]:
    """Prices (stale ones too, with their age), pegs (fresh prices only) and sources: a
    source is up when its last report was fresh and recent."""
    out_prices = {
        sym: {"price": p.price, "age_s": now - p.time, "sources": list(p.sources),
              "fresh": now - p.time <= cfg.price_staleness_s}
        for sym, p in prices.by_symbol.items()
    }
    pegs: dict[str, dict[str, float | None]] = {}
    for sym in cfg.peg_symbols:
        price = prices.fresh(sym, now, cfg.price_staleness_s)
        dev = price / PEG_USD - 1.0 if price is not None else None
        pegs[sym] = {
            "price": price,
            "deviation": dev,
            "abs_deviation": abs(dev) if dev is not None else None,
        }
    out_sources: dict[str, dict[str, Any]] = {}
    for name, text in sources.items():
        t_text, ok = [*text.split("|"), "0"][:2]
        age = now - float(t_text)
        out_sources[name] = {"up": ok == "1" and age <= cfg.price_staleness_s, "age_s": age}
    return {"prices": out_prices, "pegs": pegs, "sources": out_sources}


def miner_view(
    btc: dict[str, Any], raw_btc: dict[str, Any], prices: Prices, cfg: AggregatesConfig,
    now: float, hashprice_7d_ago: float | None,
) -> dict[str, Any]:
    w = (raw_btc.get("windows") or {}).get(str(cfg.hashprice_window)) or {}
    blocks = int(w.get("blocks", 0))
    reward = int(w.get("subsidy", 0)) + int(w.get("fees", 0))
    price = prices.fresh(cfg.btc_symbol, now, cfg.price_staleness_s)
    hp = economics.hashprice_usd_per_phs_day(reward, blocks, price, btc.get("hashrate_hs"))
    revenue: dict[str, float | None] = {}
    ratio: dict[str, float | None] = {}
    ratio_high: dict[str, float | None] = {}
    for e in cfg.fleet_efficiencies_j_per_th:
        label = economics.efficiency_label(e)
        r = economics.revenue_usd_per_mwh(hp, e)
        revenue[label] = r
        ratio[label] = r / cfg.ai_benchmark_low_usd_per_mwh if r is not None else None
        ratio_high[label] = r / cfg.ai_benchmark_high_usd_per_mwh if r is not None else None
    change = (
        hp / hashprice_7d_ago - 1.0
        if hp is not None and hashprice_7d_ago is not None and hashprice_7d_ago > 0
        else None
    )
    return {
        "hashprice_usd_per_phs_day": hp,
        "hashprice_7d_ago": hashprice_7d_ago,
        "hashprice_change_7d": change,
        "revenue_usd_per_mwh": revenue,
        "ai_benchmark_low_usd_per_mwh": cfg.ai_benchmark_low_usd_per_mwh,
        "ai_benchmark_high_usd_per_mwh": cfg.ai_benchmark_high_usd_per_mwh,
        "revenue_to_ai_low_ratio": ratio,
        "revenue_to_ai_high_ratio": ratio_high,
        "btc_price": price,
    }


def collectors_view(
    names: list[str], status: dict[str, dict[str, str]], events: dict[str, str], now: float
) -> dict[str, Any]:
    """Merge the status hashes written by collectors with their ``collector.status`` events;
    the later transition wins."""
    out: dict[str, Any] = {}
    for name in names:
        h = status.get(name, {})
        connected: bool | None = None
        since: float | None = None
        if "connected" in h:
            connected = h["connected"] in ("1", "True", "true")
            since = float(h["since"]) if h.get("since") else None
        ev = events.get(name)
        if ev:
            t_text, c_text = ev.split("|")[:2]
            t = float(t_text)
            if since is None or t > since:
                connected, since = c_text == "1", t
        last = h.get("last_event_at")
        out[name] = {
            "connected": connected,
            "since": since,
            "disconnected_for_s": (
                (0.0 if connected else (now - since if since is not None else None))
                if connected is not None else None
            ),
            "last_event_age_s": now - float(last) if last else None,
        }
    return out


CLOCK_SLACK_S = 2.0
"""Tolerance between the clocks of the replicas whose samplers took consecutive samples."""


def _rise(values: list[float]) -> float:
    """Sum of the increases between consecutive values (decreases — a redrive, a process
    that restarted its counters — add nothing)."""
    return float(sum(max(0.0, b - a) for a, b in itertools.pairwise(values)))


def _growth(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Over the latest run of samples in which ``points`` (time, value) never decreased:
    (seconds from its start to the latest sample, how much the value grew). (0, 0) when the
    latest value is no higher than where the run started."""
    if not points:
        return 0.0, 0.0
    start = len(points) - 1
    while start > 0 and points[start - 1][1] <= points[start][1]:
        start -= 1
    grew = points[-1][1] - points[start][1]
    if grew <= 0:
        return 0.0, 0.0
    return points[-1][0] - points[start][0], grew


def _process_state(
    last_seen: float, ttl: float | None, gone_at: float | None, stopping: bool
) -> str:
    """alive; stopped (it said it was stopping, or its heartbeat was deleted before its TTL
    ran out: a clean shutdown); died (its heartbeat expired: the process was killed,
    crashed or lost Redis). Telling the two apart by timing needs samples closer together
    than the heartbeat's TTL minus its refresh period (15 s against 30 s by default)."""
    if gone_at is None:
        return "alive"
    if not stopping and ttl is not None and gone_at + CLOCK_SLACK_S >= last_seen + ttl:
        return "died"
    return "stopped"


def ops_view(
    last: str | None, history: list[tuple[float, str]], procs: dict[str, str],
    downs: dict[str, str], now: float,
) -> dict[str, Any]:
    """The ``ops`` root from the latest ``ops.sample`` (``time|json``), the history of its
    trend figures (``(time, json)``, any order), the per-process sightings
    (``last_seen|ttl|roles|gone_at``) and since which sample each component is down.
    Redis memory (``redis``, ``redis_max_used_ratio``) is the latest sample's."""
    sample: dict[str, Any] = {}
    sampled_at: float | None = None
    if last:
        t_text, _, body = last.partition("|")
        sampled_at, sample = float(t_text), json.loads(body)
    hist = sorted((t, json.loads(body)) for t, body in history)

    processes: dict[str, Any] = {}
    for instance, text in procs.items():
        seen_text, ttl_text, roles, gone_text, stopping = [*text.split("|"), "", "", "", ""][:5]
        last_seen = float(seen_text)
        ttl = float(ttl_text) if ttl_text else None
        gone_at = float(gone_text) if gone_text else None
        processes[instance] = {
            "instance": instance,
            "roles": roles.split(),
            "state": _process_state(last_seen, ttl, gone_at, stopping == "1"),
            "last_seen": last_seen,
            "gone_for_s": now - gone_at if gone_at is not None else None,
        }

    components: dict[str, Any] = {}
    for c in sample.get("components") or []:
        key = ops_component_key(c["instance"], c["name"])
        restarts = [float(h["r"][key]) for _, h in hist if key in (h.get("r") or {})]
        # Measured on the samplers' clock from the first sample that saw it down, not from
        # the process's own `since`: the engine's clock may not be the processes' (demo).
        down_since = downs.get(key)
        components[key] = {
            **c,
            "down_for_s": (
                max(0.0, now - float(down_since)) if not c["up"] and down_since else None
            ),
            "restarts_recent": int(_rise(restarts)),
        }

    groups: dict[str, Any] = {}
    for g in sample.get("groups") or []:
        key = f"{g['stream']}/{g['group']}"
        lag = g.get("lag")
        # Entries when Redis reports the lag (>= 7), else the seconds the group is behind.
        points = []
        for t, h in hist:
            row = (h.get("g") or {}).get(key)
            if row is not None:
                pending, row_lag, behind = row
                points.append((t, float(pending + row_lag) if row_lag is not None
                               else float(behind)))
        growing_for, growth = _growth(points)
        groups[key] = {
            **g,
            "backlog": g["pending"] + lag if lag is not None else None,
            "growing_for_s": growing_for,
            "growth": growth,
        }

    dead_letters = {
        name: {
            "length": length,
            "added": int(_rise([float((h.get("d") or {}).get(name, 0)) for _, h in hist])),
        }
        for name, length in (sample.get("dead_letters") or {}).items()
    }

    # Samples of releases before the field carry no ``redis``: an empty map, no alert.
    redis: dict[str, Any] = {}
    for r in sample.get("redis") or []:
        used, limit = int(r.get("used_memory") or 0), int(r.get("maxmemory") or 0)
        redis[str(r["node"])] = {
            "node": str(r["node"]),
            "used_memory": used,
            "maxmemory": limit,
            # No maxmemory (0): no limit to be near, never a ratio.
            "used_ratio": used / limit if limit > 0 else None,
        }
    ratios = [n["used_ratio"] for n in redis.values() if n["used_ratio"] is not None]
    return {
        "sampled_at": sampled_at,
        "sample_age_s": now - sampled_at if sampled_at is not None else None,
        "interval_s": sample.get("interval_s"),
        "processes": processes,
        "components": components,
        "groups": groups,
        "dead_letters": dead_letters,
        "redis": redis,
        "redis_max_used_ratio": max(ratios) if ratios else None,
    }
