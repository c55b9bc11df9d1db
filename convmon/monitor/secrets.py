"""Secret references: values that must never be logged or printed.

A secret in configuration is written as ``env:NAME`` (read from the environment),
``file:/path`` (read from a file, trailing newline stripped; the Docker/Kubernetes way) or,
discouraged, a literal. The reference is kept, the value is read only when a component
needs it (`Secret.reveal`), and every printed form is redacted.

Libraries do not know what is secret: an error from a websocket or HTTP client quotes the
URL it failed on, API key and all. So every value a `Secret` resolves to is remembered
(`remember`, also done for every secret of a loaded configuration), and `scrub` replaces
those values, and the secret-bearing parts of secret URLs, in any text. It runs where text
leaves the process: every log line (the formatters in `logs`), every HTTP answer (a
middleware), every error text stored in Redis.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

REDACTED = "***"
_MIN_SECRET = 4
"""Shorter values are not scrubbed: replacing every ``1`` or ``ab`` would garble logs."""

_known: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def remember(value: str) -> None:
    """Treat ``value`` (and, for a URL, its credentials, path and query) as secret."""
    global _pattern
    found = {v for v in (value, *_url_parts(value)) if len(v) >= _MIN_SECRET}
    with _lock:
        if found <= _known:
            return
        _known.update(found)
        ordered = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def scrub(text: str) -> str:
    """``text`` with every remembered secret value replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def _url_parts(value: str) -> Iterable[str]:
    if "://" not in value:
        return ()
    try:
        parts = urlsplit(value)
    except ValueError:
        return ()
    out: list[str] = []
    if parts.password:
        out += [parts.password, unquote(parts.password)]
    if parts.username and parts.password is None:
        out.append(parts.username)  # a token given as the user part
    path = parts.path.strip("/")
    keys = [seg for seg in path.split("/") if _tokenish(seg)]
    if keys and "/" in path:
        keys.append(path)
    others = [parts.fragment, *(pair.partition("=")[2] for pair in parts.query.split("&"))]
    keys += [part for part in others if _tokenish(part)]
    return out + [form for part in keys for form in (part, unquote(part))]


def _tokenish(part: str) -> bool:
    """A URL part that looks like a key (``3f9c...``), not like a word (``services``)."""
    if len(part) >= 16:
        return True
    return len(part) >= 8 and any(c.isdigit() for c in part) and any(c.isalpha() for c in part)


class SecretError(ValueError):
    """A secret reference could not be resolved (missing variable or unreadable file)."""


class Secret:
    """A reference to a secret value."""

    __slots__ = ("_raw",)

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str) or not raw:
            raise ValueError("a secret must be a non-empty string (env:NAME, file:/path)")
        if raw.startswith("env:") and not raw[4:]:
            raise ValueError("env: secret needs a variable name")
        if raw.startswith("file:") and not raw[5:]:
            raise ValueError("file: secret needs a path")
        self._raw = raw

    @property
    def kind(self) -> str:
        if self._raw.startswith("env:"):
            return "env"
        if self._raw.startswith("file:"):
            return "file"
        return "plain"

    def reveal(self) -> str:
        """The secret value. Call at the point of use; never store or log the result."""
        value = self._resolve()
        remember(value)
        return value

    def _resolve(self) -> str:
        if self.kind == "env":
            name = self._raw[4:]
            value = os.environ.get(name)
            if value is None:
                raise SecretError(f"environment variable {name} is not set")
            return value
        if self.kind == "file":
            path = Path(self._raw[5:])
            try:
                return path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
        return self._raw

    def redacted(self) -> str:
        """A printable form: the reference for env/file; for a literal URL, the URL with
        its credentials and key-like path and query parts replaced by ``***`` (a public
        endpoint stays readable); ``***`` for any other literal."""
        if self.kind != "plain":
            return self._raw
        if "://" in self._raw:
            return redact_url(self._raw)
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({self.redacted()!r})"

    __str__ = redacted

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: s.redacted(), when_used="always"
            ),
        )

    @classmethod
    def _validate(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return cls(value)
        raise ValueError("a secret must be a string: env:NAME, file:/path or a literal")


def redact_url(url: str) -> str:
    """``redis://user:pw@host/db`` → ``redis://user:***@host/db``; key-like path segments,
    query values and fragments (``/v2/<key>``, ``?api-key=<key>``) become ``***`` too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if "@" in rest.split("/", 1)[0]:
        creds, _, rest = rest.rpartition("@")
        user = creds.split(":", 1)[0] if ":" in creds else ""
        rest = f"{user + ':' if user else ''}{REDACTED}@{rest}"
    host, slash, tail = rest.partition("/")
    path, qmark, query = tail.partition("?")
    query, hash_mark, fragment = query.partition("#")
    if not qmark:
        path, hash_mark, fragment = path.partition("#")
    path = "/".join(REDACTED if _tokenish(seg) else seg for seg in path.split("/"))
    query = "&".join(
        f"{name}={REDACTED}" if sep_ and _tokenish(value) else pair
        for pair in query.split("&")
        for name, sep_, value in [pair.partition("=")]
    )
    fragment = REDACTED if fragment else ""
    return (f"{scheme}://{host}{slash}{path}{qmark}{query}"
            f"{'#' if hash_mark else ''}{fragment}")


def remember_all(obj: Any) -> None:
    """Remember the value of every `Secret` found in ``obj`` (pydantic models, mappings,
    sequences), so text naming them is scrubbed before any component reveals them.
    Secrets that do not resolve yet are skipped (using them will report that)."""
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, Secret):
            with contextlib.suppress(SecretError):
                node.reveal()
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple | set | frozenset):
            for v in node:
                walk(v)
        elif hasattr(node, "__pydantic_fields__"):
            for name in type(node).__pydantic_fields__:
                walk(getattr(node, name, None))

    walk(obj)
