"""The alerts room's errors: one family, so that the daemon and the CLI can catch
`AlertsError` for anything the alert path raises on purpose.

- `DeliveryError`: a receiver could not deliver a notification; the dispatcher retries it
  when ``retryable`` (after ``retry_after`` seconds when the receiver asked, e.g. HTTP 429)
  and dead-letters it otherwise.
- `AlertsConfigError`: the ``alerts`` section is inconsistent (receivers, routes).
- `MatcherError`: a label matcher (route, inhibit rule, silence) does not parse.
- `DurationError`: a duration typed on the command line does not parse.

The last three are also `ValueError`s: pydantic validators turn them into configuration
errors that name the file, line and field, and callers that catch `ValueError` keep working.
"""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error the alerts room raises on purpose."""


class DeliveryError(AlertsError):
    """A receiver could not deliver. ``retryable`` failures are retried with backoff;
    ``retry_after`` (seconds) is the receiver's own request (HTTP 429)."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None,
        reason: str = "error",
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.reason = reason


class AlertsConfigError(AlertsError, ValueError):
    """The alerts configuration is inconsistent: an unknown receiver, no root receiver."""


class MatcherError(AlertsError, ValueError):
    """A label matcher does not parse, is too long, or has an invalid RE2 regex."""


class DurationError(AlertsError, ValueError):
    """A duration such as ``30m`` or ``2h`` does not parse."""
