"""Tests of the detector recipes (a package, so that module names such as ``test_edge_rules`` may repeat
in other test folders)."""
