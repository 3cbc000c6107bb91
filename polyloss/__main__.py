"""Command line: ``python -m polyloss {list,check,bench,demo,plot}``."""

from __future__ import annotations

from polyloss._tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
