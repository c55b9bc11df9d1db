"""The rule engine's exception hierarchy."""

from __future__ import annotations


class RuleError(Exception):
    """Base of every error raised by the rule engine."""


class RuleLoadError(RuleError):
    """Rule files or parameters that cannot be loaded (carries `FileError`s)."""


class RuleEvaluationError(RuleError):
    """A condition, value or template failed at run time (counted, never fatal)."""
