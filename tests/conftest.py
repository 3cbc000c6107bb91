"""Hypothesis profiles for the property and fuzz tests, and fixtures shared by test modules.

``ci`` (the default): a bounded, derandomized number of examples per test.
``long``: ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=30, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder on sys.path for throw-away distributions; the registry is reloaded before and after."""
    from polyloss._registry import registry

    monkeypatch.delenv("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("POLYLOSS_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload()
    yield tmp_path
    for module in tmp_path.glob("*.py"):
        sys.modules.pop(module.stem, None)
    registry.reload()
