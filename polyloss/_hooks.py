"""The pluggy markers of the ``polyloss`` project name."""

from __future__ import annotations

import pluggy

PROJECT = "polyloss"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
