"""The judge runner writes a chunk while the next chunk's requests are in flight, and still loses at most the chunk
in flight when interrupted."""

import threading
import time

import pytest

from evalharness import plugins
from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store
from judges.base import Verdict
from tests.test_judging import seed_store

TEXTS = {"a": ["aaaa", "bb", "c", "ddd"], "b": ["x", "yyy", "zz", "w"]}
WRITE_S = 0.3


class Timed:
    """A pairwise judge (longer wins) that records when each compare call starts and ends."""

    id, version, template = "timed", "1", ""
    calls: list = []
    die_on: int | None = None

    def compare(self, items):
        if Timed.die_on is not None and len(Timed.calls) == Timed.die_on:
            raise KeyboardInterrupt
        start = time.monotonic()
        time.sleep(0.1)
        Timed.calls.append((start, time.monotonic(), threading.current_thread().name))
        return [Verdict("first" if len(c.first) > len(c.second) else "second", raw="", latency=0.1) for c in items]


@pytest.fixture(autouse=True)
def timed_judge(monkeypatch):
    plugins.reset()
    plugins.registry("judges").add("timed", Timed, "test judge", source="tests")
    Timed.calls, Timed.die_on = [], None
    writes = []
    real = Store.insert_judgments

    def slow(self, rows, **kw):
        start = time.monotonic()
        time.sleep(WRITE_S)
        real(self, rows, **kw)
        writes.append((start, time.monotonic(), threading.current_thread().name, len(rows)))

    monkeypatch.setattr(Store, "insert_judgments", slow)
    yield writes
    plugins.reset()


def test_the_next_chunk_is_judged_while_the_last_one_is_written(tmp_path, timed_judge):
    store = seed_store(tmp_path / "s.duckdb", TEXTS)
    report = judge(JudgeConfig("timed", ["a"], baseline="b", prompts="set", chunk=2), store, progress=False)
    writes = timed_judge
    assert report.called == 8 and len(writes) == 4 and sum(w[3] for w in writes) == 8
    assert all(w[2] != threading.main_thread().name for w in writes)  # written off the judging thread
    # compare of chunk k+1 started before the write of chunk k ended: the two overlapped
    assert all(Timed.calls[k + 1][0] < writes[k][1] for k in range(3))
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM judgments").fetchone() == (8,)


def test_an_interruption_waits_for_the_pending_write(tmp_path, timed_judge):
    store = seed_store(tmp_path / "s.duckdb", TEXTS)
    Timed.die_on = 2  # the third chunk's call dies while the second chunk's rows are being written
    with pytest.raises(KeyboardInterrupt):
        judge(JudgeConfig("timed", ["a"], baseline="b", prompts="set", chunk=2), store, progress=False)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM judgments").fetchone() == (4,)
