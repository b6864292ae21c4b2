"""Every test under this directory carries the ``reliability`` marker: ``pytest -m reliability`` runs only these."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability: crash/resume, concurrency, faults, bad input, store safety, "
                                       "secrets (tests/reliability)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.reliability)
