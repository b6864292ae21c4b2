"""The judge runner keeps the LLM judge's requests in flight across chunk boundaries: a slow answer holds one slot, not
the run; writes go on meanwhile; the endpoint never sees more than ``concurrency``; an interruption stops the requests
and the run resumes from what was written."""

from __future__ import annotations

import threading
import time

import pytest

from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store
from tests.judges.loopback import Loopback, mt_bench_judge, prefer_longer
from tests.reliability.test_kill_resume import seed_pairs
from tests.test_judging import seed_store

HOLD = 3.0  # the slow answer: long beside 40 fast ones, even on a loaded machine


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-window")


def straggler(hold: float = HOLD):
    """The first request is answered after ``hold`` seconds, every other one after 10 ms."""
    decide, seen, lock = mt_bench_judge(prefer_longer, delay=0.01), [], threading.Lock()
    slow = mt_bench_judge(prefer_longer, delay=hold)

    def behaviour(req):
        with lock:
            seen.append(req)
            first = len(seen) == 1
        return slow(req) if first else decide(req)

    return behaviour


def _config(url: str, chunk: int = 8, concurrency: int = 4, models=("a",)) -> JudgeConfig:
    return JudgeConfig(f"llm:model=loop,base_url={url},concurrency={concurrency},max_retries=0", list(models),
                       baseline="b", prompts="set", chunk=chunk)


def _count(store: Store) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM judgments").fetchone()[0]


def test_a_slow_answer_holds_one_slot_not_the_chunks_after_it(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s.duckdb"))
    seed_pairs(tmp_path / "s.duckdb", 20)  # 40 judgments: five chunks of 8
    writes, real = [], Store.insert_judgments

    def timed(self, rows, **kw):
        real(self, rows, **kw)
        writes.append(time.perf_counter())

    monkeypatch.setattr(Store, "insert_judgments", timed)
    with Loopback(straggler()) as server:
        report = judge(_config(server.url), store, progress=False)
        slow, others = server.completions[0], server.completions[1:]
    assert (report.judgments, report.called, report.failed) == (40, 40, 0) and len(others) == 39
    # A runner that waits for each chunk's last answer sends at most the 7 other requests of the slow one's chunk
    # before it is answered; a sliding window sends the later chunks' requests through the 3 free slots meanwhile.
    during = [r for r in others if r.started < slow.finished]
    assert len(during) >= 16, f"{len(during)} requests were sent while the slow answer was pending"
    assert sum(w < slow.finished for w in writes) >= 1  # and their rows were written meanwhile
    assert server.peak_in_flight <= 4  # calls queued together share the judge's slots
    assert _count(store) == 40


def test_the_same_texts_queued_twice_are_asked_once(tmp_path):
    texts = ["aaaa", "bb", "c", "ddd"]
    store = seed_store(tmp_path / "s.duckdb", {"a": texts, "twin": texts, "b": ["x", "yyy", "zz", "w"]})
    with Loopback(mt_bench_judge(prefer_longer, delay=0.05)) as server:
        report = judge(_config(server.url, chunk=2, models=("a", "twin")), store, progress=False)
        asked = len(server.completions)
    # 2 models x 4 prompts x 2 orders = 16 rows; the twin's 8 carry the same cache keys as a's, in flight or answered
    assert (report.judgments, report.called, report.reused, asked) == (16, 8, 8, 8)
    with store.connect() as con:
        assert con.execute("SELECT count(*), count(DISTINCT cache_key), sum(cost = 0 AND latency IS NULL) "
                           "FROM judgments").fetchone() == (16, 8, 8)


def test_an_interrupted_window_stops_its_requests_and_resumes_from_what_was_written(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s.duckdb"))
    seed_pairs(tmp_path / "s.duckdb", 20)
    real, writes = Store.insert_judgments, []

    def interrupted(self, rows, **kw):
        writes.append(len(rows))
        if len(writes) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second chunk is being written
        real(self, rows, **kw)

    with Loopback(mt_bench_judge(prefer_longer, delay=0.05)) as server:
        monkeypatch.setattr(Store, "insert_judgments", interrupted)
        with pytest.raises(KeyboardInterrupt):
            judge(_config(server.url), store, progress=False)
        time.sleep(0.5)  # requests already on the wire at the stop arrive; the queued ones are cancelled
        sent = len(server.completions)
        time.sleep(0.5)
        assert len(server.completions) == sent < 40
        assert _count(store) == 8  # the first chunk, whole
        monkeypatch.setattr(Store, "insert_judgments", real)
        again = judge(_config(server.url), store, progress=False)
    assert (again.stored, again.called, _count(store)) == (8, 32, 40)


def test_verdicts_reused_from_the_store_are_written_a_chunk_at_a_time(tmp_path, monkeypatch):
    texts = ["aaaa", "bb", "c", "ddd"]
    store = seed_store(tmp_path / "s.duckdb", {"a": texts, "twin": texts, "b": ["x", "yyy", "zz", "w"]})
    sizes, real = [], Store.insert_judgments

    def counted(self, rows, **kw):
        sizes.append(len(rows))
        return real(self, rows, **kw)

    with Loopback(mt_bench_judge(prefer_longer)) as server:
        judge(_config(server.url, chunk=2), store, progress=False)
        monkeypatch.setattr(Store, "insert_judgments", counted)
        twin = judge(_config(server.url, chunk=2, models=("twin",)), store, progress=False)
        asked = len(server.completions)
    # the twin's 8 rows all carry verdicts a's run stored: no request, and one transaction per chunk, not one for all
    assert (twin.called, twin.reused, asked) == (0, 8, 8)
    assert sizes == [2, 2, 2, 2]
