"""Label matchers in Alertmanager syntax: ``name=value``, ``name!=value``, ``name=~regex``,
``name!~regex``.

Used by routes, inhibit rules and silences. Regexes are anchored (full match), as in
Alertmanager. A matcher on a missing label compares against the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]
_MATCHER_RE = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name<op>value``; the value may be double-quoted. Raises `ValueError`."""
        m = _MATCHER_RE.match(text)
        if m is None:
            raise ValueError(f"invalid matcher {text!r}: expected name=value, !=, =~ or !~")
        name, op, value = m.group(1), m.group(2), m.group(3)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        return cls.build(name, op, value)  # type: ignore[arg-type]

    @classmethod
    def build(cls, name: str, op: MatchOp, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})\\Z")
            except re.error as exc:
                raise ValueError(f"invalid regex in matcher {name}{op}{value!r}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.match(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def match_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
