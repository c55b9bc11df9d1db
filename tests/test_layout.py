"""The house rules of the layout, checked over the import graph.

- Production code never imports the simulators (`convmon.sim`): only the composition
  root's ``demo`` command reaches them, lazily, and the ``convmon.demos`` entry points.
- The core (`convmon.monitor`) imports nothing from collectors, rules or alerts; those
  three never import each other.
- Nothing in the package imports the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "convmon"
ROOMS = ("collectors", "rules", "alerts")
# The CLI's `demo` command starts the simulators (imported inside the command).
SIM_ALLOWED = {"convmon.monitor.commands"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_production_code_never_imports_the_simulators() -> None:
    offenders = {
        mod: sorted(i for i in imps if within(i, "convmon.sim"))
        for mod, imps in modules().items()
        if not within(mod, "convmon.sim") and mod not in SIM_ALLOWED
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_rooms_import_the_core_and_never_each_other() -> None:
    bad: dict[str, list[str]] = {}
    for mod, imps in modules().items():
        if within(mod, "convmon.sim"):
            continue
        if within(mod, "convmon.monitor"):
            forbidden = [f"convmon.{room}" for room in ROOMS]
        else:
            room = next((r for r in ROOMS if within(mod, f"convmon.{r}")), None)
            if room is None:
                continue
            forbidden = [f"convmon.{r}" for r in ROOMS if r != room]
        hits = sorted(i for i in imps if any(within(i, f) for f in forbidden))
        if hits:
            bad[mod] = hits
    assert bad == {}


def test_the_package_never_imports_the_tests() -> None:
    bad = {m: sorted(i for i in imps if within(i, "tests")) for m, imps in modules().items()}
    assert {m: i for m, i in bad.items() if i} == {}


def test_the_check_sees_real_imports() -> None:
    graph = modules()
    assert "convmon.sim.demo" in graph["convmon.monitor.commands"]
    assert any(within(i, "convmon.collectors.solana") for i in graph["convmon.sim.solana_tx"])
