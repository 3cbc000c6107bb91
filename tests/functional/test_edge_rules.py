"""Every edge row of every loss family through every path and backend (see ``tests/_edge.py``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from _edge import EdgeRow
from _edge import check_row

import polyloss as pl


def _rows() -> list[EdgeRow]:
    rows: list[EdgeRow] = []
    for path in sorted(Path(__file__).parent.glob("_edge_rows_*.py")):
        rows.extend(importlib.import_module(f"functional.{path.stem}").ROWS)
    return rows


ROWS = _rows()


def test_every_builtin_loss_has_rows() -> None:
    covered = {row.loss for row in ROWS}
    from polyloss.functional import BUILTIN_LOSSES

    assert sorted(set(BUILTIN_LOSSES) - covered) == []


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
# the value checks (out-of-domain targets...) read values, which a lazy dask array does not give; the
# edge rules on dask are the NaN and empty-batch tests of each loss module (pytest --xp-lazy)
@pytest.mark.xp_exclude("dask")
def test_edge_rule(row: EdgeRow, xp) -> None:
    if xp.name in row.skip:
        pytest.skip(f"{row.label}: no such dtype on {xp.name}")
    assert row.loss in pl.losses()
    check_row(row, xp)
