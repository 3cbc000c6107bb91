"""pytest plugin: the ``xp`` fixture over every installed backend.

Enable it in a plugin's ``conftest.py`` with
``pytest_plugins = ["polyloss.testing.plugin"]``. The cases are listed when
tests are collected, so cases added with
:func:`polyloss.testing.cases.register_case` in a ``conftest.py`` are included.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polyloss.testing.cases import Case
from polyloss.testing.cases import case_params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "xp" in metafunc.fixturenames:
        metafunc.parametrize("xp", case_params(), indirect=True)


@pytest.fixture
def xp(request: pytest.FixtureRequest) -> Iterator[Case]:
    """One backend case: ``xp.asarray(numpy_data)``, ``xp.to_numpy(result)``, ``xp.ns``."""
    case: Case = request.param
    with case.active():
        yield case
