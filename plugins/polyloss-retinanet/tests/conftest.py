"""Test setup of polyloss-retinanet: polyloss's ``xp`` fixture, and the recipes registered."""

from __future__ import annotations

import polyloss as pl

# the xp fixture of polyloss's pytest plugin runs each test on numpy, array-api-strict and torch
pytest_plugins = ["polyloss.testing.plugin"]

if "retinanet" not in pl.recipes():  # running from a source checkout without `pip install`: register by hand
    import polyloss_retinanet

    pl.register_plugin(polyloss_retinanet, name="retinanet")
