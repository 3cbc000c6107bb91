"""The command-line tools of ``python -m polyloss``, apart from the library code.

``cli`` (argument parsing, ``list`` and ``check``), ``bench``, ``plot`` and
``demo``. They sit above every library layer: they import the library, and
nothing in the library imports them. The built-in sample data they share with
the conformance kit stays in :mod:`polyloss._samples` (library level), because
:mod:`polyloss.testing` uses it too.
"""
