"""Command line: ``python -m polyloss {list,check}``."""

from __future__ import annotations

from polyloss._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
