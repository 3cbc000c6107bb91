"""pytest plugin: the ``xp`` fixture over every installed backend.

Enable it in a plugin's ``conftest.py`` with
``pytest_plugins = ["polyloss.testing.plugin"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polyloss.testing.cases import Case, case_params


@pytest.fixture(params=case_params())
def xp(request: pytest.FixtureRequest) -> Iterator[Case]:
    """One backend case: ``xp.asarray(numpy_data)``, ``xp.to_numpy(result)``, ``xp.ns``."""
    case: Case = request.param
    with case.active():
        yield case
