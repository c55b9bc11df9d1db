"""A local TronGrid for tests and the demo: the contract events endpoint over real HTTP.

``GET /v1/contracts/{address}/events`` with ``event_name``, ``only_confirmed``,
``min_block_timestamp`` (inclusive, ms), ``order_by=block_timestamp,asc|desc``, ``limit``
(at most 200) and ``fingerprint``; answers ``{success, data, meta: {at, page_size,
fingerprint, links: {next}}}`` as TronGrid does, the fingerprint only when more events
follow. The address may be base58 or hex. Events are added at run time (`add_event`,
`issue`, `redeem`, `transfer`), unconfirmed ones included.

In-process control for fault injection (each fault applies to the next request):
`fail_next` with ``ok`` (served normally: lets a fault hit a later page),
``success_false`` (HTTP 200, ``success: false``), ``rate_limit`` (429 with
``Retry-After``), ``malformed`` (a body that is not JSON), ``drop`` (the connection closes
without an answer), ``http_500``; `add_raw_event` (an event of any shape, e.g. broken);
``require_key`` (answers 401 ``success: false`` without that ``TRON-PRO-API-KEY``);
``ignore_only_confirmed`` (serves unconfirmed events even when asked not to).
"""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from convmon.collectors.stablecoins.tron.address import AddressError, to_base58, to_hex
from convmon.sim.localhttp import serve

ZERO_BASE58 = to_base58("41" + "00" * 20)
_tx_ids = itertools.count(1)
_FAULTS = frozenset({"ok", "success_false", "rate_limit", "malformed", "drop", "http_500"})


def tx_id(n: int) -> str:
    return format(n, "064x")


@dataclass
class _Stored:
    contract: str
    event: dict[str, Any]


@dataclass
class LocalTronGrid:
    """Serve the events API on 127.0.0.1 (``url`` once started)."""

    events: list[_Stored] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    """Query parameters of every request served (faults included)."""
    keys_seen: list[str | None] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)
    """Monotonic time of every request served."""
    require_key: str | None = None
    ignore_only_confirmed: bool = False
    retry_after_s: float = 1.0
    port: int = 0
    block: int = 60_000_000
    _faults: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> LocalTronGrid:
        app = web.Application()
        app.router.add_get("/v1/contracts/{address}/events", self._events)
        self._runner, self.port = await serve(app, port=port)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, *faults: str) -> None:
        for fault in faults:
            if fault not in _FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        self._faults.extend(faults)

    def add_raw_event(self, contract: str, event: dict[str, Any]) -> None:
        self.events.append(_Stored(to_base58(contract), event))

    def add_event(
        self, contract: str, name: str, result: dict[str, Any], *, timestamp_ms: int,
        tx: str | None = None, event_index: int = 0, unconfirmed: bool = False,
        block: int | None = None,
    ) -> dict[str, Any]:
        """Store one event as TronGrid returns it (parameters by name and by position)."""
        if block is None:
            self.block += 1
            block = self.block
        base58_contract = to_base58(contract)
        event: dict[str, Any] = {
            "block_number": block,
            "block_timestamp": timestamp_ms,
            "caller_contract_address": base58_contract,
            "contract_address": base58_contract,
            "event_index": event_index,
            "event_name": name,
            "result": {**{str(i): v for i, v in enumerate(result.values())}, **result},
            "result_type": {k: "address" if str(v).startswith("0x") else "uint256"
                            for k, v in result.items()},
            "event": f"{name}({', '.join(result)})",
            "transaction_id": tx or tx_id(next(_tx_ids)),
        }
        if unconfirmed:
            event["_unconfirmed"] = True
        self.events.append(_Stored(base58_contract, event))
        return event

    def issue(self, contract: str, units: int, *, timestamp_ms: int, **kw: Any) -> dict[str, Any]:
        return self.add_event(contract, "Issue", {"amount": str(units)},
                              timestamp_ms=timestamp_ms, **kw)

    def redeem(self, contract: str, units: int, *, timestamp_ms: int, **kw: Any) -> dict[str, Any]:
        return self.add_event(contract, "Redeem", {"amount": str(units)},
                              timestamp_ms=timestamp_ms, **kw)

    def transfer(
        self, contract: str, sender: str, receiver: str, units: int, *, timestamp_ms: int,
        **kw: Any,
    ) -> dict[str, Any]:
        """A Transfer with addresses in the API's ``0x`` + 20-byte form."""
        def evm(a: str) -> str:
            return "0x" + to_hex(a)[2:]
        return self.add_event(contract, "Transfer",
                              {"from": evm(sender), "to": evm(receiver), "value": str(units)},
                              timestamp_ms=timestamp_ms, **kw)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        self.request_times.append(time.monotonic())
        key = request.headers.get("TRON-PRO-API-KEY")
        self.keys_seen.append(key)
        fault = self._faults.pop(0) if self._faults else "ok"
        if fault != "ok":
            if fault == "drop":
                if request.transport is not None:
                    request.transport.close()
                raise ConnectionResetError("dropped by the test server")
            if fault == "rate_limit":
                return web.json_response(
                    {"Error": "request rate exceeded the allowed_rps"}, status=429,
                    headers={"Retry-After": str(self.retry_after_s)})
            if fault == "malformed":
                return web.Response(body=b'{"success": true, "data": [{"transaction_',
                                    content_type="application/json")
            if fault == "http_500":
                return web.json_response({"success": False, "error": "internal"}, status=500)
            return web.json_response({"success": False, "error": "server busy", "statusCode": 500})
        if self.require_key is not None and key != self.require_key:
            return web.json_response({"success": False, "error": "ApiKey not exists",
                                      "statusCode": 401}, status=401)
        try:
            contract = to_base58(request.match_info["address"])
        except AddressError:
            return web.json_response({"success": False, "error": "invalid address"},
                                     status=400)
        return web.json_response(self._page(contract, query), dumps=_dumps)

    def _page(self, contract: str, query: dict[str, str]) -> dict[str, Any]:
        name = query.get("event_name")
        confirmed = (query.get("only_confirmed", "false") == "true"
                     and not self.ignore_only_confirmed)
        since = int(query.get("min_block_timestamp", "0"))
        limit = max(1, min(200, int(query.get("limit", "20"))))
        descending = query.get("order_by", "block_timestamp,desc").endswith("desc")
        matching = [
            s.event for s in self.events
            if s.contract == contract
            and (name is None or s.event.get("event_name") == name)
            and not (confirmed and s.event.get("_unconfirmed"))
            and _timestamp(s.event) >= since
        ]
        matching.sort(key=_timestamp, reverse=descending)
        start = 0
        if "fingerprint" in query:
            start = int(base64.urlsafe_b64decode(query["fingerprint"].encode()).decode())
        data = matching[start : start + limit]
        meta: dict[str, Any] = {"at": int(time.time() * 1000), "page_size": len(data)}
        if start + limit < len(matching):
            fingerprint = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            meta["fingerprint"] = fingerprint
            meta["links"] = {"next": f"{self.url}/v1/contracts/{contract}/events?"
                                     f"fingerprint={fingerprint}"}
        return {"data": data, "success": True, "meta": meta}


def _timestamp(event: dict[str, Any]) -> int:
    value = event.get("block_timestamp")
    return value if isinstance(value, int) else 0


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()
