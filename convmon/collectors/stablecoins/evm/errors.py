"""Errors of the Ethereum stablecoin collector: one hierarchy, so callers can tell ours
from a library's."""

from __future__ import annotations


class CollectorError(RuntimeError):
    """Base of the Ethereum stablecoin collector's errors."""


class MalformedLog(CollectorError, ValueError):
    """A log (or head) of a watched token that does not have the shape its event requires;
    counted and skipped, never fatal."""
