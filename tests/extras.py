"""Tests of optional extras: skipped where the extra is missing, except in the test environment.

`./scripts/test` installs every extra and sets BIRDBRIDGE_TEST_EXTRAS=1, so there a missing extra fails the test
instead of skipping it silently.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need_extra(module: str, extra: str) -> ModuleType:
    """Import `module` (shipped by `birdbridge[extra]`), or skip; fail instead where the test env requires extras."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not importable ({exc}): pip install 'birdbridge[{extra}]'"
        if os.environ.get("BIRDBRIDGE_TEST_EXTRAS") == "1":
            pytest.fail(f"{message}; ./scripts/test installs every extra")
        pytest.skip(message, allow_module_level=True)
