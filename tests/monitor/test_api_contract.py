"""The HTTP API answers what its published description says (convmon/monitor/openapi.yaml),
checked on a live daemon with real collectors, alerts and silences."""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema
import yaml
from redis.asyncio import Redis

from convmon.monitor.app import load_config
from convmon.monitor.keys import Keys
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.monitor.test_daemon_faults import running_daemon, solana_overrides
from tests.waiting import eventually


def validator(spec: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"components": spec["components"], "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema)


def check(spec: dict[str, Any], name: str, body: Any) -> None:
    errors = sorted(validator(spec, name).iter_errors(body), key=str)
    assert errors == [], [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


async def test_every_answer_matches_the_published_description(
    redis_url: str, redis: Redis, keys: Keys
) -> None:
    async with LocalSolanaServer() as solana:
        config = load_config(
            None,
            environ={"CONVMON_REDIS__URL": redis_url, "CONVMON_REDIS__PREFIX": keys.prefix,
                     "CONVMON_HTTP__PORT": "0", "CONVMON_INSTANCE": "contract"},
            overrides=solana_overrides(solana),
        )
        async with running_daemon(config) as http, aiohttp.ClientSession() as s:
            base = f"http://127.0.0.1:{http.port}"
            async with s.get(f"{base}/api/v1/openapi.yaml") as r:
                assert r.status == 200
                spec = yaml.safe_load(await r.text())

            async def status() -> dict[str, Any]:
                async with s.get(f"{base}/api/v1/status") as r:
                    assert r.status == 200
                    doc: dict[str, Any] = await r.json()
                    return doc

            async def watchdog_firing() -> bool:
                return any(a["labels"].get("alertname") == "Watchdog"
                           for a in (await status())["alerts"])

            await eventually(watchdog_firing, "the Watchdog alert fires")
            await eventually(
                lambda: _processes_with_components(status()), "the heartbeat lists components"
            )
            doc = await status()
            check(spec, "Status", doc)
            assert doc["processes"][0]["components"], doc["processes"]
            async with s.get(f"{base}/api/v1/alerts") as r:
                alerts = await r.json()
            for alert in alerts:
                check(spec, "Alert", alert)
            async with s.get(f"{base}/readyz") as r:
                check(spec, "Readiness", await r.json())
            async with s.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            new = {"matchers": ["alertname=Watchdog"], "duration_s": 60, "author": "t"}
            async with s.post(f"{base}/api/v1/silences", json=new) as r:
                assert r.status == 201
                check(spec, "Silence", await r.json())
            async with s.post(f"{base}/api/v1/silences", json={**new, "duration_s": -1}) as r:
                assert r.status == 400
                check(spec, "Error", await r.json())
            async with s.get(f"{base}/api/v1/silences") as r:
                listed = await r.json()
            assert len(listed) == 1
            for silence in listed:
                check(spec, "Silence", silence)
            async with s.delete(f"{base}/api/v1/silences/{listed[0]['id']}") as r:
                assert r.status == 200 and (await r.json()) == {"expired": listed[0]["id"]}
            async with s.delete(f"{base}/api/v1/silences/nope") as r:
                assert r.status == 404
                check(spec, "Error", await r.json())


async def _processes_with_components(doc: Any) -> bool:
    found = await doc
    return bool(found["processes"] and found["processes"][0]["components"])
