"""The detector recipes run on every ``xp`` case except dask.

A recipe call on dask builds a graph of thousands of small tasks (matching,
mining and sampling over a handful of boxes), so each dask run of these tests
takes a minute. The recipes on dask are checked once, lazily and against
NumPy, by ``tests/backend/test_dask.py::test_recipe_is_lazy_and_equals_numpy``
(and by ``python -m polyloss check`` on the ``dask`` case).
"""

from __future__ import annotations

import pytest

_HERE = __file__.rsplit("/", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    dask_cases = [item for item in items if str(item.path).startswith(_HERE)
                  and getattr(getattr(item, "callspec", None), "params", {}).get("xp") is not None
                  and item.callspec.params["xp"].name == "dask"]
    if dask_cases:
        chosen = set(map(id, dask_cases))
        items[:] = [item for item in items if id(item) not in chosen]
        config.hook.pytest_deselected(items=dask_cases)
