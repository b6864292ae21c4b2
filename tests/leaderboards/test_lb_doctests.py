"""The examples in the leaderboard modules' docstrings run and hold."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["leaderboards.stats", "leaderboards.lc", "leaderboards.agreement", "leaderboards.plots",
                                    "evalharness.importers"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
