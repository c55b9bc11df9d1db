"""Label and annotation templates: sandboxed Jinja2, compiled once and cached.

Templates see ``value``, ``labels``, ``params``, ``event`` (event rules), ``key`` and
``item`` (fan-out rules) and ``now``. Nothing is escaped here: the text is data until a
receiver renders it, and each receiver escapes for its own medium (Slack, HTML, logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

# Missing fields render empty (a payload without a link must not lose its alert).
_ENV = SandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)


def _pct(value: Any, digits: int = 1) -> str:
    try:
        return f"{float(value) * 100:.{digits}f}%"
    except (TypeError, ValueError):
        return str(value)


def _human(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.2f}{unit}"
    return f"{v:.2f}" if v != int(v) else str(int(v))


def _duration(value: Any) -> str:
    try:
        s = int(float(value))
    except (TypeError, ValueError):
        return str(value)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    text = "".join(parts)
    return text or f"{sec}s"


_ENV.filters["pct"] = _pct
_ENV.filters["human"] = _human
_ENV.filters["duration"] = _duration


@lru_cache(maxsize=4096)
def compile_template(text: str) -> Template:
    """Compile (cached); raises ``jinja2.TemplateSyntaxError``."""
    return _ENV.from_string(text)


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render one template; plain text without ``{`` is returned as is."""
    if "{" not in text:
        return text
    return compile_template(text).render(dict(context))
