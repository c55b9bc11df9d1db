"""Load rule files into compiled rules, reporting every problem with file, line and field.

In: the packaged default pack (``convmon/rules/pack/*.yaml``), user files or directories,
and per-rule parameter overrides from the configuration (``rules.params.<rule>.<param>``).
Out: a `RuleSet` whose CEL programs are compiled once, or `FileErrors` listing all errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from jinja2 import TemplateSyntaxError

from convmon.monitor.yamlfile import (
    FileError,
    FileErrors,
    LocatedData,
    errors_from_validation,
    load_yaml_file,
)
from convmon.rules.celtypes import (
    BOOL,
    DYN,
    NUMBER,
    STRING,
    CelType,
    event_type,
    merge,
    params_type,
    root_types,
)
from convmon.rules.errors import RuleError
from convmon.rules.expr import AGGREGATE_ROOTS, RoundProgram, build_round_program, check
from convmon.rules.schema import ParamValue, RuleSpec, max_age_source
from convmon.rules.templates import compile_template
from convmon.rules.typecheck import check_type, infer

PACK_DIR = Path(__file__).parent / "pack"


@dataclass(frozen=True)
class Rule:
    """A loaded rule: its spec, effective parameters and compiled program."""

    spec: RuleSpec
    file: str
    params: Mapping[str, ParamValue]
    program: RoundProgram

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def on(self) -> frozenset[str]:
        return frozenset(self.spec.events)


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)

    def by_name(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    @property
    def params(self) -> dict[str, dict[str, ParamValue]]:
        return {r.name: dict(r.params) for r in self.rules}


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their ``*.yaml``/``*.yml`` files (sorted, not recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml")))
        else:
            out.append(p)
    return out


def pack_files() -> list[Path]:
    return rule_files([PACK_DIR])


def load_rules(
    files: Sequence[str | Path],
    *,
    include_pack: bool = True,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    overrides_source: LocatedData | None = None,
    overrides_prefix: Sequence[str] = ("rules", "params"),
) -> RuleSet:
    """Load and compile rules; raises `FileErrors` with every error found."""
    errors: list[FileError] = []
    specs: list[tuple[RuleSpec, LocatedData, int]] = []
    all_files = (pack_files() if include_pack else []) + rule_files(files)
    seen: dict[str, str] = {}
    for path in all_files:
        try:
            located = load_yaml_file(path)
        except FileError as exc:
            errors.append(exc)
            continue
        for spec, index in _specs_of(located, errors):
            if spec.name in seen:
                errors.append(
                    located.error(("rules", index, "name"),
                                  f"duplicate rule name (first defined in {seen[spec.name]})")
                )
                continue
            seen[spec.name] = located.file
            specs.append((spec, located, index))
    overrides = overrides or {}
    by_name = {spec.name: spec for spec, _, _ in specs}
    for rule_name, values in overrides.items():
        where = (*overrides_prefix, rule_name)
        if rule_name not in by_name:
            errors.append(_override_error(overrides_source, where, "no rule of that name"))
            continue
        for param, value in (values or {}).items():
            default = by_name[rule_name].params.get(param)
            if default is None:
                errors.append(_override_error(
                    overrides_source, (*where, param), "the rule declares no such param"
                ))
            elif not _same_type(default, value):
                errors.append(_override_error(
                    overrides_source, (*where, param),
                    f"expected {type(default).__name__} like the default {default!r}",
                ))
    ruleset = RuleSet()
    for spec, located, index in specs:
        params = _merged_params(spec.params, overrides.get(spec.name) or {})
        try:
            ruleset.rules.append(_compile(spec, located, index, params))
        except FileErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise FileErrors(errors)
    return ruleset


def _specs_of(located: LocatedData, errors: list[FileError]) -> list[tuple[RuleSpec, int]]:
    data = located.data
    if data is None:
        return []
    if not isinstance(data, dict):
        errors.append(located.error((), "a rule file is a mapping with a 'rules' list"))
        return []
    unknown = [k for k in data if k != "rules"]
    for key in unknown:
        errors.append(located.error((key,), "unknown field"))
    items = data.get("rules") or []
    if not isinstance(items, list):
        errors.append(located.error(("rules",), "must be a list of rules"))
        return []
    out: list[tuple[RuleSpec, int]] = []
    for i, item in enumerate(items):
        try:
            out.append((RuleSpec.model_validate(item), i))
        except pydantic.ValidationError as exc:
            errors.extend(errors_from_validation(exc, located, ("rules", i)))
    return out


def _compile(
    spec: RuleSpec, located: LocatedData, index: int, params: Mapping[str, ParamValue]
) -> Rule:
    errors: list[FileError] = []
    base = set(AGGREGATE_ROOTS) | {"now", "params"}
    if spec.kind == "event":
        base.add("event")
    item_vars = {"key", "item"} if spec.for_each else set()
    # The declared defaults' types: an override of another type is reported on its own.
    types: dict[str, CelType] = {
        **root_types(), "now": NUMBER, "params": params_type(spec.params)
    }
    if spec.kind == "event":
        types["event"] = event_type(spec.events)

    def checked(
        fld: str, source: str | None, extra: set[str], expected: CelType
    ) -> str | None:
        if source is None:
            return None
        try:
            check(source, base | extra, params)
            check_type(source, types, expected, fld)
        except RuleError as exc:
            errors.append(located.error(("rules", index, fld), str(exc)))
            return None
        return source

    fan_out = None
    if spec.for_each:
        fan_out = checked("for_each", spec.for_each.map, set(), DYN)
        map_type = DYN
        if fan_out is not None:
            map_type = infer(fan_out, types)
            if map_type.kind not in ("map", "record", "dyn"):
                errors.append(located.error(
                    ("rules", index, "for_each"), f"must be a map, not {map_type.describe()}"
                ))
        types.update(key=STRING, item=_item_type(map_type))
    if spec.kind == "absence":
        assert spec.age is not None and spec.max_age is not None
        age = checked("age", spec.age, item_vars, NUMBER)
        max_age = checked("max_age", max_age_source(spec.max_age), item_vars, NUMBER)
        condition = f"({age}) != null && double({age}) > double({max_age})"
        value = checked("value", spec.value, item_vars, NUMBER) or age
    else:
        condition = checked("condition", spec.condition, item_vars, BOOL) or "false"
        value = checked("value", spec.value, item_vars, NUMBER)
    resolve = checked("resolve_condition", spec.resolve_condition, item_vars, BOOL)
    template_vars = ("labels", "annotations")
    for fld in template_vars:
        for key, text in getattr(spec, fld).items():
            try:
                compile_template(text)
            except TemplateSyntaxError as exc:
                errors.append(located.error(
                    ("rules", index, fld, key), f"invalid template: {exc.message}"
                ))
    if errors:
        raise FileErrors(errors)
    try:
        program = build_round_program(spec.name, condition, value, fan_out, resolve)
    except RuleError as exc:
        raise FileErrors([located.error(("rules", index), str(exc))]) from None
    return Rule(spec=spec, file=located.file, params=params, program=program)


def _item_type(map_type: CelType) -> CelType:
    if map_type.kind == "map":
        return map_type.elem or DYN
    if map_type.kind == "record":
        return merge(map_type.fields.values())
    return DYN


def _merged_params(
    defaults: Mapping[str, ParamValue], values: Mapping[str, Any]
) -> dict[str, ParamValue]:
    """Overrides replace defaults, except maps, which are merged key by key (overriding
    one collector's figure keeps the others' defaults)."""
    merged = dict(defaults)
    for name, value in values.items():
        default = defaults.get(name)
        if isinstance(default, dict) and _same_type(default, value):
            merged[name] = {**default, **{str(k): float(v) for k, v in value.items()}}
        else:
            merged[name] = value
    return merged


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_type(default: ParamValue, value: Any) -> bool:
    if isinstance(default, dict):
        return isinstance(value, Mapping) and all(_is_number(v) for v in value.values())
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _override_error(
    source: LocatedData | None, path: Sequence[str], message: str
) -> FileError:
    if source is not None:
        return source.error(path, message)
    return FileError("<config>", None, ".".join(path), message)

