"""Thread counts that follow the free cores (evalharness.threads)."""

import subprocess
import sys
import time

import pytest
import torch

from evalharness import threads


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("EVALHARNESS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)


@pytest.mark.parametrize("others, expected", [(0, 4), (1, 3), (3, 1), (9, 1)])
def test_threads_are_the_cores_nobody_else_runs_on_and_at_least_one(clean_env, monkeypatch, others, expected):
    monkeypatch.setattr(threads, "runnable_others", lambda: others)
    assert threads.pick_threads() == expected


def test_a_count_the_user_fixed_wins(clean_env, monkeypatch):
    monkeypatch.setattr(threads, "runnable_others", lambda: 3)
    monkeypatch.setenv("EVALHARNESS_THREADS", "2")
    assert threads.pick_threads() == 2
    monkeypatch.delenv("EVALHARNESS_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.pick_threads() is None  # left to OpenMP's own reading of it


def test_the_governor_sets_torch_and_looks_again_only_after_its_interval(clean_env, monkeypatch):
    load = {"others": 1}
    monkeypatch.setattr(threads, "runnable_others", lambda: load["others"])
    before = torch.get_num_threads()
    try:
        gov = threads.ThreadGovernor(recheck_s=3600)
        assert gov.tick() == 3 and torch.get_num_threads() == 3
        load["others"] = 3
        assert gov.tick() == 3  # within the interval: no new look
        gov._last = float("-inf")
        assert gov.tick() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_spinning_process_is_seen_as_runnable():
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads.runnable_others() >= 1
    finally:
        spin.kill()
        spin.wait()
