"""Label matchers in Alertmanager syntax: ``name=value``, ``name!=value``, ``name=~regex``,
``name!~regex``.

Used by routes, inhibit rules and silences. Regexes are anchored (full match), as in
Alertmanager. A matcher on a missing label compares against the empty string.

Matchers come from users (a silence posted to the HTTP API, a route in the config) and run
against every alert the dispatcher handles, so a matcher must not be able to hang it. Regexes
therefore run on RE2 (``google-re2``), which matches in time linear in the label's length
whatever the pattern: the engine Alertmanager itself uses through Go's ``regexp``, with the
same syntax. What RE2 cannot do in linear time (backreferences, lookaround) it refuses when
the matcher is parsed. Values are bounded in length, and the matcher text is parsed without
backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import re2  # type: ignore[import-untyped]

from .errors import MatcherError

MatchOp = Literal["=", "!=", "=~", "!~"]
MAX_VALUE_CHARS = 1000
"""Longest value (literal or regex) a matcher may carry."""
_MAX_NAME_CHARS = 200
_MAX_TEXT_CHARS = _MAX_NAME_CHARS + MAX_VALUE_CHARS + 64
# Surrounding whitespace is stripped before this runs and the value takes the rest of the
# text (DOTALL), so nothing here can backtrack over long runs of whitespace.
_MATCHER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)", re.DOTALL)


class _Pattern(Protocol):
    def fullmatch(self, text: str) -> object | None: ...


def _re2_options() -> object:
    options = re2.Options()
    options.log_errors = False  # we raise a MatcherError instead; RE2 would also print to stderr
    options.never_capture = True  # only yes/no is needed; lets RE2 use its fastest matchers
    return options


_OPTIONS = _re2_options()


def compile_regex(pattern: str) -> _Pattern:
    """``pattern`` compiled by RE2; raises `MatcherError` with RE2's reason."""
    try:
        compiled: _Pattern = re2.compile(pattern, _OPTIONS)
    except UnicodeEncodeError:
        raise MatcherError("not valid UTF-8 (RE2 matches UTF-8 text)") from None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise MatcherError(f"{reason} (RE2 syntax: no backreferences or lookaround)") from None
    return compiled


@dataclass(frozen=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    _regex: _Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name<op>value``; the value may be double-quoted. Raises `MatcherError`."""
        if len(text) > _MAX_TEXT_CHARS:
            raise MatcherError(f"matcher too long ({len(text)} characters, at most "
                               f"{_MAX_TEXT_CHARS}): {text[:40]!r}...")
        m = _MATCHER_RE.fullmatch(text.strip())
        if m is None:
            raise MatcherError(f"invalid matcher {text!r}: expected name=value, !=, =~ or !~")
        name, op, value = m.group(1), m.group(2), m.group(3)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        return cls.build(name, op, value)  # type: ignore[arg-type]

    @classmethod
    def build(cls, name: str, op: MatchOp, value: str) -> Matcher:
        if len(name) > _MAX_NAME_CHARS:
            raise MatcherError(f"matcher label name {name[:40]!r}... is too long "
                               f"(at most {_MAX_NAME_CHARS} characters)")
        if len(value) > MAX_VALUE_CHARS:
            raise MatcherError(f"matcher {name}{op}... has a value of {len(value)} characters; "
                               f"at most {MAX_VALUE_CHARS} characters are allowed")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = compile_regex(value)
            except MatcherError as exc:
                raise MatcherError(f"invalid regex in matcher {name}{op}{value!r}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        try:
            found = self._regex.fullmatch(actual) is not None
        except UnicodeEncodeError:  # RE2 matches UTF-8; a lone surrogate cannot be encoded
            found = self._regex.fullmatch(actual.encode("utf-8", "replace").decode()) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def match_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
