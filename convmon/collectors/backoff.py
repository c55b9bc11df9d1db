"""Reconnect and rate-limit helpers for collectors (re-exported from the core, which the
supervisor shares)."""

from convmon.monitor.backoff import Backoff, RateLimiter

__all__ = ["Backoff", "RateLimiter"]
