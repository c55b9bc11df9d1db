"""The rules room's exception hierarchy: everything it raises derives from `RuleError`.

Load problems reach users as `convmon.monitor.yamlfile.FileError`s (file, line, field);
`RuleError` is the base of what the engine and its aggregate store raise at run time:
- `convmon.rules.expr.ExprError`: a CEL condition that does not compile or evaluate;
- `AggregateError`: invalid use of the aggregates, or Redis state they cannot use;
- `EntityMapError`: a pool → entity file that cannot be read.

The last two are also `ValueError`s: they report invalid values, and configuration
validation (pydantic) turns a `ValueError` into a message for the field.
"""

from __future__ import annotations


class RuleError(Exception):
    """Base of every error raised by the rules room."""


class AggregateError(RuleError, ValueError):
    """Invalid use of the aggregates (e.g. an unknown snapshot root), or aggregate state
    in Redis built with another layout."""


class EntityMapError(RuleError, ValueError):
    """A pool → entity map file that is missing, unreadable or malformed (names the file)."""
