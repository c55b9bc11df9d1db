"""Secret references: values that must never be logged or printed.

A secret in configuration is written as ``env:NAME`` (read from the environment),
``file:/path`` (read from a file, trailing newline stripped; the Docker/Kubernetes way) or,
discouraged, a literal. The reference is kept, the value is read only when a component
needs it (`Secret.reveal`), and every printed form is redacted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

REDACTED = "***"


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
        """A printable form: the reference for env/file, ``***`` for literals."""
        if self.kind == "plain":
            return REDACTED
        return self._raw

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
    """``redis://user:pw@host`` → ``redis://user:***@host`` for logs and status output."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user + ':' if user else ''}{REDACTED}@{host}"
