"""A local Ethereum node (anvil) with log emitters at the real stablecoin addresses.

Used by the tests and by ``convmon demo``: anvil is a real node (JSON-RPC over HTTP and
websocket, ``eth_subscribe``, ``eth_getLogs``, reorgs, state dumps), so the collector runs
against it unchanged.

No Solidity compiler is needed: `EMITTER_CODE` is a small hand-assembled contract whose
calldata is a list of records ``[header][topic]*[data]`` (header = topic count in the low
byte, data length above it) and which executes one ``LOG0..LOG4`` per record, so a single
transaction emits byte-identical copies of the real tokens' events (a USDC ``Mint`` and its
``Transfer`` twin in one tx, a USDT ``Issue`` alone, an x402 settlement's
``AuthorizationUsed`` + ``Transfer`` sent from a facilitator's address). A call with
exactly 4 bytes of calldata (a view such as ``decimals()``/``totalSupply()``) returns the
storage slot named by the selector, which `install_token` fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from convmon.collectors.errors import CollectorError
from convmon.collectors.stablecoins.evm import tokens as t
from convmon.collectors.stablecoins.evm import x402

SELECTOR_DECIMALS = 0x313CE567
SELECTOR_TOTAL_SUPPLY = 0x18160DDD
_SEGMENT = 30


def _assemble_emitter() -> bytes:
    """Runtime bytecode of the log emitter. Stack pictures are bottom → top."""
    loop, body = 10, 18
    code = bytearray.fromhex(
        "36" "6004" "14" "61" "0000" "57"  # if CALLDATASIZE == 4: goto VIEW (patched below)
        "6000"                             # ptr = 0                          [ptr]
    )
    code += bytes.fromhex(
        "5b"                               # LOOP:
        "80" "36" "11" "60") + bytes([body]) + bytes.fromhex(  # if CALLDATASIZE > ptr: BODY
        "57" "00"                          # else STOP
    )
    assert len(code) == body
    code += bytes.fromhex(
        "5b"                               # BODY:                            [ptr]
        "80" "35"                          # hdr = calldata[ptr]              [ptr hdr]
        "80" "6008" "1c"                   # dlen = hdr >> 8                  [ptr hdr dlen]
        "90" "60ff" "16"                   # n = hdr & 0xff                   [ptr dlen n]
        "80" "6005" "1b" "83" "01" "6020" "01"  # doff = ptr + 32 + 32n       [ptr dlen n doff]
        "82" "81" "6000" "37"              # memory[0:dlen] = calldata[doff:]
        "82" "01"                          # next = doff + dlen               [ptr dlen n next]
        "92" "90"                          #                                  [next dlen ptr n]
        "601e" "02" "60"                   # goto SEGMENT[n] = BASE + 30n ...
    )
    base_at = len(code)
    code += bytes.fromhex("00" "01" "56")  # ... (BASE patched below)       [next dlen ptr]
    base = len(code)
    code[base_at] = base
    for k in range(5):
        # SEGMENT[k]: push topics k-1..0 (calldata[ptr + 32 + 32i]), LOGk(0, dlen, ...),
        # drop ptr and dlen, goto LOOP with [next]. Padded so that segments are equal-sized.
        seg = bytearray(b"\x5b")
        for j, i in enumerate(reversed(range(k))):
            seg += bytes([0x80 + j, 0x60, 32 + 32 * i, 0x01, 0x35])  # DUP ptr; +off; LOAD
        seg += bytes([0x80 + k + 1, 0x60, 0x00, 0xA0 + k, 0x50, 0x50, 0x60, loop, 0x56])
        seg += b"\x00" * (_SEGMENT - len(seg))
        code += seg
    view = len(code)
    code[5:7] = view.to_bytes(2, "big")
    code += bytes.fromhex(
        "5b" "6000" "35" "60e0" "1c" "54"  # VIEW: SLOAD(selector)
        "6000" "52" "6020" "6000" "f3"     # return it as one word
    )
    assert code[loop] == 0x5B and code[body] == 0x5B and base < 256
    return bytes(code)


EMITTER_CODE = _assemble_emitter()

Record = tuple[Sequence[str], bytes]
"""(topics as 0x-hex, data) of one log."""


def encode_records(records: Sequence[Record]) -> str:
    out = bytearray()
    for topics, data in records:
        if len(topics) > 4:
            raise ValueError("a log has at most 4 topics")
        out += (len(topics) | (len(data) << 8)).to_bytes(32, "big")
        for topic in topics:
            out += bytes.fromhex(topic[2:].rjust(64, "0"))
        out += data
    return "0x" + out.hex()


def _addr_topic(address: str) -> str:
    return "0x" + address.lower()[2:].rjust(64, "0")


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def mint_records(token: t.TokenConfig, to: str, units: int, minter: str) -> list[Record]:
    """The logs the real token emits for a mint of ``units`` to ``to``."""
    transfer = ([t.TRANSFER, t.ZERO_TOPIC, _addr_topic(to)], _word(units))
    if token.style == "usdc":
        return [([t.USDC_MINT, _addr_topic(minter), _addr_topic(to)], _word(units)), transfer]
    if token.style == "usdt":
        return [([t.USDT_ISSUE], _word(units))]
    if token.style == "pyusd":
        return [([t.PYUSD_SUPPLY_INCREASED, _addr_topic(to)], _word(units)), transfer]
    if token.symbol == "USD1":
        mint = ([t.USDC_MINT, _addr_topic(minter), _addr_topic(to)], _word(units))
        return [transfer, mint]
    return [transfer]


def burn_records(token: t.TokenConfig, holder: str, units: int,
                 *, blacklisted: bool = False) -> list[Record]:
    """The logs the real token emits for a burn of ``units`` held by ``holder``."""
    transfer = ([t.TRANSFER, _addr_topic(holder), t.ZERO_TOPIC], _word(units))
    if token.style == "usdc":
        return [([t.USDC_BURN, _addr_topic(holder)], _word(units)), transfer]
    if token.style == "usdt":
        if blacklisted:
            return [([t.USDT_DESTROYED_BLACK_FUNDS], _word(int(holder, 16)) + _word(units))]
        return [([t.USDT_REDEEM], _word(units))]
    if token.style == "pyusd":
        return [([t.PYUSD_SUPPLY_DECREASED, _addr_topic(holder)], _word(units)), transfer]
    if token.symbol == "USD1":
        return [transfer, ([t.USD1_BURN, _addr_topic(holder), _addr_topic(holder)],
                           _word(units))]
    return [transfer]


def x402_records(token: t.TokenConfig, payer: str, payee: str, units: int,
                 nonce: bytes) -> list[Record]:
    """The logs FiatToken emits for ``transferWithAuthorization`` (an x402 settlement):
    ``AuthorizationUsed(authorizer, nonce)`` (both indexed, no data), then the Transfer."""
    if len(nonce) != 32:
        raise ValueError("an EIP-3009 nonce is 32 bytes")
    return [
        ([x402.AUTHORIZATION_USED, _addr_topic(payer), "0x" + nonce.hex()], b""),
        ([t.TRANSFER, _addr_topic(payer), _addr_topic(payee)], _word(units)),
    ]


def find_anvil() -> str | None:
    """``$CONVMON_ANVIL``, else ``.tools/node_modules/.bin/anvil`` of the checkout (where
    ``make test`` installs it), else ``anvil`` on PATH."""
    env = os.environ.get("CONVMON_ANVIL")
    if env and Path(env).is_file():
        return env
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = root / ".tools" / "node_modules" / ".bin" / "anvil"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AnvilError(CollectorError):
    """The local anvil node failed to start or refused a call."""


class AnvilNode:
    """An anvil process on 127.0.0.1 plus the JSON-RPC calls tests and the demo need."""

    def __init__(self, binary: str, *, port: int | None = None, chain_id: int = 1,
                 extra_args: Sequence[str] = ()) -> None:
        """``chain_id`` is what ``eth_chainId`` answers: Ethereum's by default, so the
        collector's chain check passes against the real addresses (8453 plays Base)."""
        self.binary = binary
        self.chain_id = chain_id
        self.port = port or free_port()
        self._port_given = port is not None
        self._started_once = False
        self.extra_args = list(extra_args)
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._account: str | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, *, load_state: Path | None = None,
                    dump_state: Path | None = None) -> None:
        """Start anvil and wait until it answers. A port picked here may be taken by
        someone else before anvil binds it: then another one is picked (a few times). Once
        started, the node keeps its port across restarts (clients reconnect to it)."""
        for attempt in range(5):
            try:
                await self._start_once(load_state, dump_state)
                self._started_once = True
                return
            except AnvilError:
                if self._port_given or self._started_once or attempt == 4:
                    raise
                self.port = free_port()

    async def _start_once(self, load_state: Path | None, dump_state: Path | None) -> None:
        args = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--silent",
                "--chain-id", str(self.chain_id), *self.extra_args]
        if load_state is not None:
            args += ["--load-state", str(load_state)]
        if dump_state is not None:
            args += ["--dump-state", str(dump_state)]
        self.process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for _ in range(300):
            if self.process.returncode is not None:
                err = b""
                if self.process.stderr is not None:
                    err = await self.process.stderr.read()
                raise AnvilError(f"anvil exited: {err.decode(errors='replace')[:500]}")
            with contextlib.suppress(aiohttp.ClientError, AnvilError):
                await self.rpc("eth_blockNumber")
                return
            await asyncio.sleep(0.05)
        raise AnvilError("anvil did not answer within 15 s")

    async def stop(self) -> None:
        """Terminate (anvil writes ``--dump-state`` on SIGTERM) and wait."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def rpc(self, method: str, *params: Any) -> Any:
        assert self._session is not None, "start() first"
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        async with self._session.post(self.http_url, json=body) as resp:
            reply = await resp.json(content_type=None)
        if "error" in reply:
            raise AnvilError(f"{method}: {reply['error']}")
        return reply.get("result")

    async def account(self) -> str:
        if self._account is None:
            self._account = str((await self.rpc("eth_accounts"))[0])
        return self._account

    async def install_token(self, token: t.TokenConfig, *, decimals: int | None = None,
                            total_supply: int = 0) -> None:
        """Place the emitter at the token's real address and answer its views."""
        await self.rpc("anvil_setCode", token.address, "0x" + EMITTER_CODE.hex())
        await self.set_view(token.address, SELECTOR_DECIMALS,
                            token.decimals if decimals is None else decimals)
        await self.set_view(token.address, SELECTOR_TOTAL_SUPPLY, total_supply)

    async def set_view(self, address: str, selector: int, value: int) -> None:
        await self.rpc("anvil_setStorageAt", address, "0x" + format(selector, "064x"),
                       "0x" + format(value, "064x"))

    async def emit(self, address: str, records: Sequence[Record], *,
                   wait: bool = True, sender: str | None = None) -> str:
        """Send one transaction that emits ``records``; returns its hash. With ``wait`` (and
        automine on) returns once it is mined and fails if it reverted. ``sender`` sends it
        from that address (impersonated and funded), e.g. an x402 facilitator's."""
        if sender is not None:
            await self.rpc("anvil_impersonateAccount", sender)
            await self.rpc("anvil_setBalance", sender, hex(10**20))
        tx = {"from": sender or await self.account(), "to": address,
              "data": encode_records(records), "gas": hex(1_000_000)}
        tx_hash = str(await self.rpc("eth_sendTransaction", tx))
        if wait:
            receipt = await self.receipt(tx_hash)
            if receipt.get("status") != "0x1":
                raise AnvilError(f"transaction {tx_hash} reverted")
        return tx_hash

    async def receipt(self, tx_hash: str, timeout_s: float = 20.0) -> dict[str, Any]:
        for _ in range(int(timeout_s / 0.02)):
            found = await self.rpc("eth_getTransactionReceipt", tx_hash)
            if found is not None:
                return dict(found)
            await asyncio.sleep(0.02)
        raise AnvilError(f"transaction {tx_hash} not mined")

    async def set_automine(self, enabled: bool) -> None:
        await self.rpc("evm_setAutomine", enabled)

    async def mine(self, blocks: int = 1) -> None:
        await self.rpc("anvil_mine", hex(blocks))

    async def block_number(self) -> int:
        return int(await self.rpc("eth_blockNumber"), 16)
