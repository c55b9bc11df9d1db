"""Type-check a CEL expression against the typed variables of a rule, at load time.

In: CEL source and a `CelType` per variable (`convmon.rules.celtypes`). Out: the
expression's type, or `ExprError` for the first mistake a reader would want caught before
the daemon runs: a field a record does not have (``btc.windowz``), a comparison or
arithmetic between a number and a string, a logical operator on a non-boolean, a macro on
something that is not a list or map.

Why a parser of our own: the ``cel`` package (cel-rust bindings) compiles and evaluates but
exposes neither its AST nor declared variable types. The grammar parsed here is CEL's
(operators, precedence, literals, member and index access, calls, macros); the ``cel``
package still compiles and runs every expression, so this module only has to agree with it
on what an expression means, and it answers ``dyn`` (accept) for anything it cannot type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from convmon.rules.celtypes import (
    BOOL,
    BYTES,
    DYN,
    NULL,
    NUMBER,
    STRING,
    CelType,
    list_of,
    map_of,
    merge,
)
from convmon.rules.errors import RuleError


class TypeCheckError(RuleError):
    """An expression whose types do not fit (the message is user-facing)."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
    | (?P<str>[rR]?[bB]?[rR]?
        (?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))
    | (?P<ident>[A-Za-z_]\w*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise TypeCheckError(f"cannot read {source[pos:pos + 10].strip()!r}")
        kind = m.lastgroup or "op"
        text = m.group(kind)
        if kind == "ident" and text in ("true", "false", "null", "in"):
            kind = "op" if text == "in" else "lit"
        if kind == "str" and re.match(r"[rR]?[bB]", text):
            kind = "bytes"
        out.append(_Tok(kind, text))
        pos = m.end()
    out.append(_Tok("end", ""))
    return out


_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_RELATIONS = ("<", "<=", ">", ">=")


class _Checker:
    """Recursive descent over CEL's grammar, typing as it goes."""

    def __init__(self, source: str, env: Mapping[str, CelType]) -> None:
        self.toks = _tokenize(source)
        self.i = 0
        self.env = dict(env)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text:
            raise TypeCheckError(f"expected {text!r}, found {tok.text or 'the end'!r}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("op",):
            self.i += 1
            return True
        return False

    def expr(self) -> CelType:
        cond = self.or_()
        if not self.accept("?"):
            return cond
        _want(BOOL, cond, "the condition of '?:'")
        a = self.expr()
        self.take(":")
        b = self.expr()
        return merge([a, b])

    def or_(self) -> CelType:
        left = self.and_()
        while self.accept("||"):
            _want(BOOL, left, "'||'")
            _want(BOOL, self.and_(), "'||'")
            left = BOOL
        return left

    def and_(self) -> CelType:
        left = self.rel()
        while self.accept("&&"):
            _want(BOOL, left, "'&&'")
            _want(BOOL, self.rel(), "'&&'")
            left = BOOL
        return left

    def rel(self) -> CelType:
        left = self.add()
        while self.peek().text in (*_RELATIONS, "==", "!=", "in") and self.peek().kind == "op":
            op = self.take().text
            right = self.add()
            if op == "in":
                if right.kind not in ("dyn", "list", "map"):
                    raise TypeCheckError(f"'in' needs a list or map, not {right.describe()}")
            elif op in _RELATIONS or not (_is_null(left) or _is_null(right)):
                _comparable(left, right, op)
            left = BOOL
        return left

    def add(self) -> CelType:
        left = self.mul()
        while self.peek().text in ("+", "-") and self.peek().kind == "op":
            op = self.take().text
            left = _arith(left, self.mul(), op)
        return left

    def mul(self) -> CelType:
        left = self.unary()
        while self.peek().text in ("*", "/", "%") and self.peek().kind == "op":
            op = self.take().text
            left = _arith(left, self.unary(), op)
        return left

    def unary(self) -> CelType:
        if self.accept("!"):
            _want(BOOL, self.unary(), "'!'")
            return BOOL
        if self.accept("-"):
            t = self.unary()
            _want(NUMBER, t, "unary '-'")
            return NUMBER if t.kind != "dyn" else DYN
        return self.member()

    def member(self) -> CelType:
        t, path = self.primary()
        while True:
            if self.accept("."):
                name = self.take().text
                if self.peek().text == "(":
                    t = self.method(t, name, path)
                    path = "(…)"
                else:
                    t = _select(t, name, path)
                    path = f"{path}.{name}"
            elif self.accept("["):
                key_tok = self.peek()
                key = self.expr()
                self.take("]")
                literal = key_tok.kind == "str" and self.toks[self.i - 2] is key_tok
                t = _index(t, key, _unquote(key_tok.text) if literal else None, path)
                path = f"{path}[…]"
            else:
                return t

    def args(self) -> list[CelType]:
        self.take("(")
        out: list[CelType] = []
        while self.peek().text != ")":
            out.append(self.expr())
            if not self.accept(","):
                break
        self.take(")")
        return out

    def method(self, target: CelType, name: str, path: str) -> CelType:
        if name in _MACROS:
            return self.macro(target, name, path)
        args = self.args()
        if name in ("contains", "startsWith", "endsWith", "matches"):
            _want(STRING, target, f"{name}()")
            for a in args:
                _want(STRING, a, f"{name}()")
            return BOOL
        if name == "size":
            return NUMBER
        return DYN

    def macro(self, target: CelType, name: str, path: str) -> CelType:
        self.take("(")
        var = self.take().text
        self.take(",")
        if target.kind == "list":
            bound = target.elem or DYN
        elif target.kind in ("map", "record"):
            bound = STRING
        elif target.kind == "dyn":
            bound = DYN
        else:
            raise TypeCheckError(f"{path}.{name}() needs a list or map, not {target.describe()}")
        saved = self.env.get(var)
        self.env[var] = bound
        body = self.expr()
        if saved is None:
            del self.env[var]
        else:
            self.env[var] = saved
        self.take(")")
        if name == "map":
            return list_of(body)
        if name == "filter":
            _want(BOOL, body, f"{name}()")
            return list_of(bound)
        _want(BOOL, body, f"{name}()")
        return BOOL

    def primary(self) -> tuple[CelType, str]:
        tok = self.take()
        if tok.kind == "num":
            return NUMBER, tok.text
        if tok.kind == "str":
            return STRING, tok.text
        if tok.kind == "bytes":
            return BYTES, tok.text
        if tok.kind == "lit":
            return (NULL if tok.text == "null" else BOOL), tok.text
        if tok.kind == "ident":
            if self.peek().text == "(":
                args = self.args()
                return _function(tok.text, args), f"{tok.text}(…)"
            return self.env.get(tok.text, DYN), tok.text
        if tok.text == "(":
            t = self.expr()
            self.take(")")
            return t, "(…)"
        if tok.text == "[":
            elems: list[CelType] = []
            while self.peek().text != "]":
                elems.append(self.expr())
                if not self.accept(","):
                    break
            self.take("]")
            return list_of(merge(elems)), "[…]"
        if tok.text == "{":
            values: list[CelType] = []
            while self.peek().text != "}":
                self.expr()
                self.take(":")
                values.append(self.expr())
                if not self.accept(","):
                    break
            self.take("}")
            return map_of(merge(values)), "{…}"
        if tok.text == ".":
            return self.primary()
        raise TypeCheckError(f"unexpected {tok.text or 'end of expression'!r}")


def _unquote(text: str) -> str:
    body = text.lstrip("rR")
    quote = body[:3] if body[:3] in ("'''", '"""') else body[:1]
    return body[len(quote):-len(quote)]


def _is_null(t: CelType) -> bool:
    return t.kind == "null"


def _want(expected: CelType, got: CelType, where: str) -> None:
    if got.kind in ("dyn", expected.kind):
        return
    raise TypeCheckError(f"{where} needs {expected.describe()}, not {got.describe()}")


def _comparable(left: CelType, right: CelType, op: str) -> None:
    if "dyn" in (left.kind, right.kind):
        return
    if op in _RELATIONS and (_is_null(left) or _is_null(right)):
        raise TypeCheckError(f"'{op}' cannot compare with null")
    if left.kind != right.kind:
        raise TypeCheckError(
            f"'{op}' compares {left.describe()} with {right.describe()}"
        )
    if op in _RELATIONS and left.kind not in ("number", "string", "bytes", "bool"):
        raise TypeCheckError(f"'{op}' cannot order {left.describe()} values")


def _arith(left: CelType, right: CelType, op: str) -> CelType:
    if "dyn" in (left.kind, right.kind):
        return DYN
    if left.kind == right.kind == "number":
        return NUMBER
    if op == "+" and left.kind == right.kind and left.kind in ("string", "bytes", "list"):
        return merge([left, right])
    raise TypeCheckError(f"'{op}' between {left.describe()} and {right.describe()}")


def _select(t: CelType, name: str, path: str) -> CelType:
    if t.kind == "record":
        if name not in t.fields:
            raise TypeCheckError(
                f"{path} has no field {name!r} (fields: {', '.join(sorted(t.fields))})"
            )
        return t.fields[name]
    if t.kind == "map":
        return t.elem or DYN
    if t.kind == "dyn":
        return DYN
    raise TypeCheckError(f"{path} is {t.describe()}, it has no field {name!r}")


def _index(t: CelType, key: CelType, literal: str | None, path: str) -> CelType:
    if t.kind == "record":
        _want(STRING, key, f"{path}[…]")
        if literal is not None:
            return _select(t, literal, path)
        return merge(t.fields.values())
    if t.kind == "map":
        _want(STRING, key, f"{path}[…]")
        return t.elem or DYN
    if t.kind == "list":
        _want(NUMBER, key, f"{path}[…]")
        return t.elem or DYN
    if t.kind == "dyn":
        return DYN
    raise TypeCheckError(f"{path} is {t.describe()}, it cannot be indexed")


_FUNCTION_TYPES: Mapping[str, CelType] = {
    "size": NUMBER, "int": NUMBER, "uint": NUMBER, "double": NUMBER, "string": STRING,
    "bytes": BYTES, "matches": BOOL,
}


def _function(name: str, args: list[CelType]) -> CelType:
    return _FUNCTION_TYPES.get(name, DYN)


def infer(source: str, env: Mapping[str, CelType]) -> CelType:
    """The type of ``source`` given the variables' types; raises `TypeCheckError`."""
    checker = _Checker(source, env)
    t = checker.expr()
    if checker.peek().kind != "end":
        raise TypeCheckError(f"unexpected {checker.peek().text!r}")
    return t


def check_type(source: str, env: Mapping[str, CelType], expected: CelType, what: str) -> CelType:
    """`infer`, then require ``expected`` (null allowed) for the whole expression."""
    t = infer(source, env)
    if expected.kind != "dyn" and t.kind not in ("dyn", "null", expected.kind):
        raise TypeCheckError(f"{what} must be {expected.describe()}, not {t.describe()}")
    return t
