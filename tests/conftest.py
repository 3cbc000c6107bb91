"""Hypothesis profiles for the property and fuzz tests.

``ci`` (the default): a bounded, derandomized number of examples per test.
``long``: ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py tests/test_fuzz.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck
from hypothesis import settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=30, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
