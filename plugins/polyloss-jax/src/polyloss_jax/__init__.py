"""polyloss-jax: the JAX backend of polyloss, as a third-party plugin.

Installing this distribution is all it takes: its entry point
(``[project.entry-points.polyloss] jax = "polyloss_jax"``) makes polyloss
register :class:`JaxBackend` through the ``polyloss_register_backends`` hook,
and every polyloss loss then accepts ``jax.Array`` inputs, also under
``jax.jit``, ``jax.grad`` and ``jax.vmap``. Importing this module does not
import jax: the backend loads ``jax.numpy`` the first time a JAX array is seen.
"""

from __future__ import annotations

import polyloss
from polyloss_jax._backend import JaxBackend
from polyloss_jax._backend import data_parallel_axis

__all__ = ["JaxBackend", "data_parallel_axis", "polyloss_register_backends"]
__version__ = "0.1.0"


@polyloss.hookimpl
def polyloss_register_backends() -> list[polyloss.Backend]:
    """The JAX backend (one instance; its namespace is loaded lazily)."""
    return [JaxBackend()]
