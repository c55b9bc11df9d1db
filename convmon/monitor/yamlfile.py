"""YAML loading that remembers where every value came from.

Configuration and rule files are user input: a mistake must be reported with the file,
the line and the field. PyYAML's composed node tree has the marks; this module turns it
into plain Python data plus a map from field path to line number, rejects duplicate keys
(which PyYAML would silently collapse), and converts pydantic validation errors into
`FileError`s that point at the offending line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

FieldPath = tuple[str | int, ...]
M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class FileError(Exception):
    """A user-facing error in an input file: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '<root>'}: {self.message}"


@dataclass
class FileErrors(Exception):
    """Several errors found in one pass (a loader reports all it can, not just the first)."""

    errors: list[FileError]

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


@dataclass
class LocatedData:
    """Parsed YAML with the line of each field path."""

    file: str
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)
    origins: dict[FieldPath, str] = field(default_factory=dict)
    """Values that came from elsewhere than the file (e.g. ``CONVMON_HTTP__PORT``): errors
    at or below such a path name that origin instead of a line of the file."""

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path``, or of its nearest parent that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def error(self, path: Sequence[str | int], message: str) -> FileError:
        p = tuple(path)
        for end in range(len(p), 0, -1):
            origin = self.origins.get(p[:end])
            if origin is not None:
                return FileError(origin, None, format_path(path), message)
        return FileError(self.file, self.line_of(path), format_path(path), message)


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_yaml(text: str, file: str) -> LocatedData:
    """Parse one YAML document; raises `FileError` on syntax errors and duplicate keys."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        located = LocatedData(file=file, data=None)
        if node is not None:
            located.lines[()] = node.start_mark.line + 1
            located.data = _build(loader, node, (), located)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise FileError(file, line, "", f"invalid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> LocatedData:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileError(str(p), None, "", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FileError(str(p), None, "", "not UTF-8 text") from None
    return parse_yaml(text, str(p))


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: FieldPath, out: LocatedData) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                line = key_node.start_mark.line + 1
                raise FileError(out.file, line, format_path(path), "keys must be scalars")
            skey = str(key) if not isinstance(key, str) else key
            sub = (*path, skey)
            if skey in result:
                raise FileError(
                    out.file, key_node.start_mark.line + 1, format_path(sub), "duplicate key"
                )
            out.lines[sub] = key_node.start_mark.line + 1
            result[skey] = _build(loader, value_node, sub, out)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            out.lines[(*path, i)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*path, i), out))
        return items
    return loader.construct_object(node, deep=True)


def validate_model(
    model: type[M],
    data: Any,
    located: LocatedData,
    prefix: Sequence[str | int] = (),
) -> M:
    """Validate ``data`` (found at ``prefix`` in ``located``) as ``model``.

    Raises `FileErrors` naming the line and dotted field of every validation error.
    """
    try:
        return model.model_validate(data if data is not None else {})
    except pydantic.ValidationError as exc:
        raise FileErrors(errors_from_validation(exc, located, prefix)) from None


def errors_from_validation(
    exc: pydantic.ValidationError, located: LocatedData, prefix: Sequence[str | int] = ()
) -> list[FileError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if isinstance(p, (str, int))]
        path = (*prefix, *loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        errors.append(located.error(path, msg))
    return errors


def dig(data: Any, path: Sequence[str | int]) -> Any:
    """The value at ``path`` in nested dicts/lists, or None when absent."""
    cur = data
    for part in path:
        if isinstance(cur, Mapping):
            if part not in cur:
                return None
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur
