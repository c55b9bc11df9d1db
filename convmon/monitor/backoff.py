"""Reconnect pacing and request rate limits (collectors, supervisor, receivers).

`Backoff` gives capped exponential delays with full jitter (so a fleet of collectors that
lost the same endpoint does not reconnect in lockstep). `RateLimiter` is an async token
bucket for public APIs that publish per-IP limits.
"""

from __future__ import annotations

import asyncio
import random
import time


class Backoff:
    """Capped exponential backoff with full jitter; `reset` after a success."""

    def __init__(
        self, initial: float = 0.5, maximum: float = 60.0, factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    async def wait(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0


class RateLimiter:
    """Token bucket: at most ``rate`` acquisitions per ``per`` seconds, bursts up to
    ``burst`` (default ``rate``). `pause` honours a server's ``Retry-After``."""

    def __init__(self, rate: float, per: float = 1.0, burst: float | None = None) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.fill_rate = rate / per
        self.capacity = burst if burst is not None else rate
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: float = 1.0) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._tokens = min(
                    self.capacity, self._tokens + (now - self._updated) * self.fill_rate
                )
                self._updated = now
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return
                await asyncio.sleep((tokens - self._tokens) / self.fill_rate)

    def pause(self, seconds: float) -> None:
        """Stop handing out tokens for ``seconds`` (e.g. after HTTP 429 Retry-After)."""
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))
        self._tokens = 0.0
