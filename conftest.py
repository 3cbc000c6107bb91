"""Root pytest configuration: the ``xp`` fixture runs one test body on every backend.

``xp`` yields a :class:`polyloss.testing.Case`: the namespace under test plus
helpers to move NumPy reference data in (``xp.asarray``) and results out
(``xp.to_numpy``). Cases: numpy; array_api_strict with default flags, with
the strictest flags (no boolean indexing, no data-dependent shapes) and on a
non-default device; torch in float64 and float32; cupy and torch-cuda where a
GPU exists (skipped cleanly otherwise).
"""

pytest_plugins = ["polyloss.testing.plugin"]
