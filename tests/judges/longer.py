"""``longer``: a pairwise test judge that prefers the longer answer, so a test decides each verdict by the lengths of
the answers it stores. ``from tests.judges.longer import longer_judge  # noqa: F401`` registers it for every test of
a module."""

import pytest

from evalharness import plugins
from judges.base import Verdict


class Longer:
    """A pairwise judge that prefers the longer answer; equal lengths are a tie."""

    id, version, template = "longer", "1", ""

    def compare(self, items):
        return [Verdict("tie" if len(c.first) == len(c.second) else "first" if len(c.first) > len(c.second)
                        else "second") for c in items]


@pytest.fixture(autouse=True)
def longer_judge():
    plugins.reset()
    plugins.registry("judges").add("longer", Longer, "test judge", source="tests")
    yield
    plugins.reset()
