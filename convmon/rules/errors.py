"""The rule engine's exception hierarchy.

Load problems reach users as `convmon.monitor.yamlfile.FileError`s (file, line, field);
`RuleError` is the base of what the engine itself raises (e.g. `expr.ExprError`).
"""

from __future__ import annotations


class RuleError(Exception):
    """Base of every error raised by the rule engine."""
