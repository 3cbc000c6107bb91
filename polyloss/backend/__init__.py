"""Array backends. Built-in: NumPy, PyTorch, CuPy; any other through a plugin."""

from polyloss.backend._base import Backend
from polyloss.backend._base import GenericBackend

__all__ = ["Backend", "GenericBackend"]
