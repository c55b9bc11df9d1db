"""HTTP API under ``/api/v1/``: silences (list, create, expire) and current alerts.

Bodies are JSON. ``POST /api/v1/silences`` takes ``matchers`` (list of ``name=value``
strings), ``ends_at`` or ``duration_s``, optional ``starts_at``, ``author``, ``comment``.
Times are Unix seconds and durations seconds, as JSON numbers: the parser accepts ``NaN``,
``Infinity`` and ``1e400`` (which becomes infinity), so every number is checked to be finite
and in range before it reaches the store, and a bad one is a 400 that names the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from convmon.monitor.alerting import decode_transition
from convmon.monitor.plugins import Runtime

from .config import AlertsConfig
from .silences import SilenceStore, check_duration, check_timestamp


def _silence_json(s: Any, now: float) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(s)
    out["state"] = s.state(now)
    return out


def http_routes(runtime: Runtime, cfg: AlertsConfig) -> Sequence[web.RouteDef]:
    silences = SilenceStore(runtime.redis, runtime.keys, registry=runtime.metrics)

    async def list_silences(request: web.Request) -> web.Response:
        now = runtime.clock.now()
        return web.json_response([_silence_json(s, now) for s in await silences.all(now)])

    async def add_silence(request: web.Request) -> web.Response:
        now = runtime.clock.now()
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            starts = check_timestamp("starts_at", body["starts_at"]) if "starts_at" in body else now
            if "ends_at" in body:
                ends = check_timestamp("ends_at", body["ends_at"])
            elif "duration_s" in body:
                ends = starts + check_duration("duration_s", body["duration_s"])
            else:
                raise ValueError("give ends_at or duration_s")
            matchers = body.get("matchers")
            if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
                raise ValueError("matchers must be a list of strings like name=value")
            author, comment = body.get("author", ""), body.get("comment", "")
            for name, value in (("author", author), ("comment", comment)):
                if not isinstance(value, str):
                    raise ValueError(f"{name} must be a string")
            silence = await silences.add(matchers, starts, ends, author, comment, now)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(_silence_json(silence, now), status=201)

    async def expire_silence(request: web.Request) -> web.Response:
        if not await silences.expire(request.match_info["id"], runtime.clock.now()):
            return web.json_response({"error": "no such silence"}, status=404)
        return web.json_response({"expired": request.match_info["id"]})

    async def list_alerts(request: web.Request) -> web.Response:
        raw = await runtime.redis.hvals(runtime.keys.active_alerts)
        alerts = [msgspec.to_builtins(decode_transition(v)) for v in raw]
        alerts.sort(key=lambda a: (a["state"], a["rule"], a["starts_at"]))
        return web.json_response(alerts)

    return [
        web.get("/api/v1/silences", list_silences),
        web.post("/api/v1/silences", add_silence),
        web.delete("/api/v1/silences/{id}", expire_silence),
        web.get("/api/v1/alerts", list_alerts),
    ]
