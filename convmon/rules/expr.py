"""CEL expressions of rules: checked and compiled once, at load time.

In: the CEL source of a rule field and the names it may read. Out: a compiled
``cel.Program`` or a `ExprError` saying what is wrong (syntax, an unknown variable, an
unknown function, a parameter the rule does not declare).

Why a rewrite step: the ``cel`` package converts a Python context to CEL values on every
call unless the same ``cel.Context`` is reused, and re-binding a variable throws that cache
away. So an evaluation round builds ONE context (aggregates, ``now``, every rule's
parameters) and each rule's source is rewritten before compiling: ``params`` becomes
``rule_params["<rule>"]`` and, in fan-out rules, ``item`` becomes ``(<map>)[key]`` inside a
``map`` comprehension. The rewrite works on tokens and never touches string literals.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import cel

from convmon.rules.errors import RuleError

AGGREGATE_ROOTS: frozenset[str] = frozenset(
    {"btc", "stablecoin", "depin", "market", "miner", "collectors", "ops", "payments",
     "depin_flows"}
)
"""Variables served by the aggregate store (CONTRACTS §3)."""

PARAMS_VAR = "rule_params"
"""The context variable holding ``{rule name: {param: value}}``."""

_NATIVE_FUNCTIONS = frozenset(
    {
        "size", "int", "uint", "double", "string", "bytes", "dyn", "type", "duration",
        "timestamp", "contains", "startsWith", "endsWith", "matches",
        "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate",
        "getDayOfWeek", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)
_MACRO_VAR = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_IDENT = re.compile(r"[A-Za-z_]\w*")


class ExprError(RuleError):
    """A CEL expression that cannot be used (the message is user-facing)."""


def _is_known_function(name: str) -> bool:
    # Operators are reported by their overload ids (``_>_``, ``@in``, ``!_``, ``-_``).
    return name in _NATIVE_FUNCTIONS or name.startswith(("_", "@", "!", "-"))


def check(source: str, allowed: Collection[str], params: Collection[str] = ()) -> cel.Program:
    """Compile ``source`` and check every name it uses; raises `ExprError`."""
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        raise ExprError(f"invalid CEL: {_first_line(exc)}") from None
    bound = set(_MACRO_VAR.findall(source))
    unknown_vars = sorted(set(program.variables()) - set(allowed) - bound)
    if unknown_vars:
        raise ExprError(
            f"unknown variable(s) {', '.join(unknown_vars)} "
            f"(known: {', '.join(sorted(allowed))})"
        )
    unknown_fns = sorted(f for f in program.functions() if not _is_known_function(f))
    if unknown_fns:
        raise ExprError(f"unknown function(s) {', '.join(unknown_fns)}")
    if "params" in program.variables():
        for name in _param_refs(source):
            if name not in params:
                raise ExprError(f"params.{name} is not declared in the rule's params")
    return program


def _param_refs(source: str) -> set[str]:
    out: set[str] = set()
    for kind, text in _tokens(source):
        if kind == "code":
            out.update(re.findall(r"(?<![\w.])params\s*\.\s*([A-Za-z_]\w*)", text))
    return out


def rewrite(source: str, names: Mapping[str, str]) -> str:
    """Replace free identifiers (not field selections, not inside strings) per ``names``."""
    out: list[str] = []
    for kind, text in _tokens(source):
        if kind != "code":
            out.append(text)
            continue
        pos = 0
        for m in _IDENT.finditer(text):
            out.append(text[pos : m.start()])
            word = m.group(0)
            before = text[: m.start()].rstrip()
            selected = before.endswith(".") and not re.search(r"\d\.$", before)
            out.append(names[word] if word in names and not selected else word)
            pos = m.end()
        out.append(text[pos:])
    return "".join(out)


def _tokens(source: str) -> list[tuple[str, str]]:
    """Split into ("code", text) and ("string", literal) runs."""
    parts: list[tuple[str, str]] = []
    i, start, n = 0, 0, len(source)
    while i < n:
        ch = source[i]
        if ch in "'\"":
            if start < i:
                parts.append(("code", source[start:i]))
            quote = source[i : i + 3] if source[i : i + 3] in ("'''", '"""') else ch
            j = i + len(quote)
            while j < n and source[j : j + len(quote)] != quote:
                j += 2 if source[j] == "\\" else 1
            j = min(n, j + len(quote))
            parts.append(("string", source[i:j]))
            i = start = j
            continue
        i += 1
    if start < n:
        parts.append(("code", source[start:]))
    return parts


def compile_rewritten(source: str) -> cel.Program:
    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - checked before rewriting
        raise ExprError(f"invalid CEL after rewriting: {_first_line(exc)}") from None


FANOUT_VAR = "fanout_map"
"""In the per-item program of a fan-out rule: the map computed by the rule's ``for_each``."""


@dataclass(frozen=True)
class RoundProgram:
    """A rule's evaluation program(s) for one round.

    Plain rules: one program over the shared round context returning one row
    ``["", condition, value, null, sustains]``. Fan-out rules run in two steps, because the ``cel``
    package copies a variable's whole value on each access and the aggregate roots are
    large: ``map_program`` computes the ``for_each`` map once on the shared context, then
    ``program`` runs over a small context holding just that map (plus any roots the
    condition itself reads) and returns ``[key, condition, value, item, sustains]`` per
    entry. ``sustains`` is true when the rule's ``resolve_condition`` does not hold: a
    firing instance stays firing then, even if ``condition`` no longer holds.
    """

    rule: str
    program: cel.Program
    roots: frozenset[str]
    """Aggregate roots the rule reads (all of them, both steps)."""
    map_program: cel.Program | None = None
    item_roots: frozenset[str] = frozenset()
    """Roots the per-item step reads (empty keeps its context small)."""
    event_fields: frozenset[str] | None = None
    """The ``event`` fields the program reads, when it only ever selects fields of it
    (the engine then passes just those: converting a whole event costs more than the
    evaluation). None when it uses ``event`` as a whole."""

    def run(
        self,
        context: cel.Context | dict[str, object],
        variables: dict[str, object] | None = None,
    ) -> list[list[object]]:
        """Evaluate; ``variables`` (the plain dict behind ``context``) feeds the second
        step of fan-out rules."""
        if self.map_program is None:
            result = self.program.execute(context)
        else:
            fan = self.map_program.execute(context)
            if fan is None:
                return []
            if not isinstance(fan, dict):
                raise ExprError(f"for_each gave {type(fan).__name__}, not a map")
            if not fan:
                return []
            small: dict[str, object] = {FANOUT_VAR: fan}
            source = variables or {}
            params = source.get(PARAMS_VAR)
            small[PARAMS_VAR] = {self.rule: params.get(self.rule) if isinstance(params, dict)
                                 else None}
            small["now"] = source.get("now")
            for name in self.item_roots:
                small[name] = source.get(name)
            result = self.program.execute(small)
        if not isinstance(result, list):
            raise ExprError(f"evaluation returned {type(result).__name__}, not rows")
        return result


def build_round_program(
    rule: str,
    condition: str,
    value: str | None,
    fan_out: str | None,
    resolve: str | None = None,
) -> RoundProgram:
    """Combine a rule's (already checked) expressions into its program(s)."""
    names = {"params": f'{PARAMS_VAR}["{rule}"]'}
    cond = rewrite(condition, names)
    val = rewrite(value, names) if value else "null"
    # `cond ||` first: CEL's `||` absorbs an error of the other side when one side is true.
    sustain = f"(({cond}) || !({rewrite(resolve, names)}))" if resolve else "false"
    if fan_out is None:
        program = compile_rewritten(f'[["", ({cond}), ({val}), null, {sustain}]]')
        roots = frozenset(program.variables()) & AGGREGATE_ROOTS
        return RoundProgram(rule, program, roots,
                            event_fields=selected_fields(program.source, "event"))
    map_program = compile_rewritten(rewrite(fan_out, names))
    item = {"item": f"{FANOUT_VAR}[key]"}
    program = compile_rewritten(
        f"{FANOUT_VAR}.map(key, [key, ({rewrite(cond, item)}), ({rewrite(val, item)}), "
        f"{FANOUT_VAR}[key], {rewrite(sustain, item)}])"
    )
    item_roots = frozenset(program.variables()) & AGGREGATE_ROOTS
    roots = item_roots | (frozenset(map_program.variables()) & AGGREGATE_ROOTS)
    return RoundProgram(rule, program, roots, map_program=map_program, item_roots=item_roots)


def selected_fields(source: str, name: str) -> frozenset[str] | None:
    """Fields selected from the free identifier ``name`` (``name.field``), or None when
    ``name`` also appears otherwise (indexed, passed whole, used in a macro)."""
    fields: set[str] = set()
    for kind, text in _tokens(source):
        if kind != "code":
            continue
        for m in _IDENT.finditer(text):
            if m.group(0) != name or text[: m.start()].rstrip().endswith("."):
                continue
            sel = re.match(r"\s*\.\s*([A-Za-z_]\w*)", text[m.end() :])
            if sel is None:
                return None
            fields.add(sel.group(1))
    return frozenset(fields)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
