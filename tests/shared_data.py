"""Access to ../shared/data: real third-party reference data, read in place, never copied.

Outside CI a test that needs it skips when the folder is absent; in CI (CI=true) it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skip (or fail under CI) when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing; CI must have ../shared/data beside the project")
        pytest.skip(f"{path} not present")
    return path


def require_binary(name: str, path: str | None) -> str:
    """An external program the test runs for real; skip (or fail under CI) when missing."""
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; `make test` installs it")
        pytest.skip(f"{name} not installed (make test installs it)")
    return path
