"""Test setup of polyloss-jax: float64 JAX, and JAX cases in polyloss's ``xp`` fixture."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import polyloss as pl  # noqa: E402
from polyloss.testing.cases import Case  # noqa: E402
from polyloss.testing.cases import register_case  # noqa: E402

# the xp fixture of polyloss's pytest plugin runs each test on numpy, array-api-strict, torch and these
pytest_plugins = ["polyloss.testing.plugin"]

register_case(Case("jax-f64", "jax.numpy", "float64"))
register_case(Case("jax-f32", "jax.numpy", "float32", rtol=2e-5, atol=1e-6))

if "jax" not in pl.backends():  # running from a source checkout without `pip install`: register by hand
    import polyloss_jax

    pl.register_plugin(polyloss_jax, name="jax")
