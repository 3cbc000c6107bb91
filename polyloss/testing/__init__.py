"""Testing kit: backend cases (the ``xp`` fixture) and conformance helpers for plugin authors."""

from polyloss.testing.cases import Case
from polyloss.testing.cases import available_cases

__all__ = ["Case", "available_cases"]
