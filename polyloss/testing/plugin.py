"""pytest plugin: the ``xp`` fixture over every installed backend.

Enable it in a plugin's ``conftest.py`` with
``pytest_plugins = ["polyloss.testing.plugin"]``. The cases are listed when
tests are collected, so cases added with
:func:`polyloss.testing.cases.register_case` in a ``conftest.py`` are included.

The lazy cases (dask) run only with ``pytest --xp-lazy``: a dask call builds
and computes a task graph, which makes each test tens of times slower.
``@pytest.mark.xp_exclude("dask", reason=...)`` on a test (or ``pytestmark`` of
a module) leaves the named cases out, e.g. where a lazy backend would build a
graph too large to be worth running for every parameter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polyloss.testing.cases import Case
from polyloss.testing.cases import case_params

#: cases the ``xp`` fixture runs only when asked (``--xp-lazy``): every call builds and computes a task graph
LAZY_CASES = frozenset({"dask"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--xp-lazy", action="store_true", default=False,
                     help="also run the xp fixture's lazy backend cases (dask): slow, every call is a task graph")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "xp_exclude(*names, reason): leave the named backend cases out of the xp fixture of a test"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "xp" in metafunc.fixturenames:
        excluded = {name for marker in metafunc.definition.iter_markers("xp_exclude") for name in marker.args}
        if not metafunc.config.getoption("--xp-lazy", default=False):
            excluded |= LAZY_CASES
        params = [p for p in case_params() if p.id not in excluded]
        metafunc.parametrize("xp", params, indirect=True)


@pytest.fixture
def xp(request: pytest.FixtureRequest) -> Iterator[Case]:
    """One backend case: ``xp.asarray(numpy_data)``, ``xp.to_numpy(result)``, ``xp.ns``."""
    case: Case = request.param
    with case.active():
        yield case
