"""Several processes on one store: two judges serialise safely (same rows as one judge alone), readers read while a
writer writes, and a writer that can't get the file in time stops with a one-line lock message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evalharness import plugins
from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store
from judges.base import Verdict
from tests.judges.loopback import Loopback, mt_bench_judge, prefer_longer
from tests.reliability.helpers import Started, cli_env, count, invoke, snapshot
from tests.reliability.test_kill_resume import KEY, seed_pairs

JUDGE = ["--judge", "llm:model=loop,backoff=0.01", "--models", "a", "--baseline", "b", "--prompts", "set",
         "--no-progress", "--no-leaderboard", "--store", "s.duckdb"]


@pytest.mark.slow
@pytest.mark.ci
def test_two_judge_processes_on_one_store_end_with_the_rows_of_one(tmp_path):
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    alone.mkdir(), shared.mkdir()
    for d in (alone, shared):
        seed_pairs(d / "s.duckdb", 60)  # 120 judgments each: two chunks
    with Loopback(behaviour=mt_bench_judge(prefer_longer)) as server:
        one = invoke(["judge", "--base-url", server.url, *JUDGE], alone, {"OPENAI_API_KEY": KEY})
        assert one.exit_code == 0, one.output
    # Each answer takes 0.5 s: a process judging 120 comparisons 8 at a time is busy for ~7.5 s, long enough for the
    # two processes (started together, each taking seconds to start on a loaded machine) to overlap.
    with Loopback(behaviour=mt_bench_judge(prefer_longer, delay=0.5)) as server:
        args = ["judge", "--base-url", server.url, *JUDGE]
        env = cli_env({"OPENAI_API_KEY": KEY})
        first, second = Started(args, shared, env, "first"), Started(args, shared, env, "second")
        # While both write, the leaderboard reads the store (read-only connections wait out the writers' short ones).
        store = shared / "s.duckdb"
        reads = []
        while (first.proc.poll() is None or second.proc.poll() is None) and len(reads) < 2:
            if count(store, "SELECT count(*) FROM judgments") >= 2:
                board = invoke(["leaderboard", "--format", "json", "--bootstrap", "0", "--store", "s.duckdb"], shared)
                assert board.exit_code == 0, board.output
                reads.append(json.loads(board.stdout)["meta"]["pairs"])
        results = [first.finish(), second.finish()]
        overlap = server.peak_in_flight
    for code, out, err in results:
        assert code == 0, err
        assert "120 judgments" in out and "0 failed" in out, out
    assert overlap > 8  # more requests in flight than one process sends (8): both were judging at once
    assert reads and all(0 < n <= 60 for n in reads), reads  # each read saw a consistent partial store
    tables = ["judgments"]
    assert snapshot(store, tables) == snapshot(alone / "s.duckdb", tables)


class Judged:
    """A pairwise judge (longer wins) whose first call lets another run judge the same pairs to the end first:
    what a second process finishing while this one is mid-way looks like to this one."""

    id, version, template = "racing", "1", ""
    other = None

    def compare(self, items):
        if Judged.other is not None:
            run, Judged.other = Judged.other, None
            run()
        return [Verdict("first" if len(c.first) > len(c.second) else "second" if len(c.second) > len(c.first)
                        else "tie", raw="x", latency=0.5, prompt_tokens=10, completion_tokens=2, cost=0.001)
                for c in items]


def test_a_run_that_finds_rows_another_process_wrote_keeps_their_cost(tmp_path):
    seed_pairs(tmp_path / "s.duckdb", 4)
    store = Store(str(tmp_path / "s.duckdb"))
    plugins.reset()
    plugins.registry("judges").add("racing", Judged, "test judge", source="tests")
    try:
        cfg = JudgeConfig("racing", ["a"], baseline="b", prompts="set", chunk=2)
        Judged.other = lambda: judge(cfg, store, progress=False)
        judge(cfg, store, progress=False)
    finally:
        plugins.reset()
    with store.connect() as con:
        rows = con.execute("SELECT count(*), sum(prompt_tokens), sum(cost) FROM judgments").fetchone()
    # 4 pairs x 2 orders, each judged by a call that used 10 prompt tokens and cost 0.001: nothing zeroed by a copy
    assert rows[0] == 8 and rows[1] == 80 and abs(rows[2] - 0.008) < 1e-12


def test_a_writer_that_cannot_get_the_store_stops_with_one_lock_line(tmp_path):
    seed_pairs(tmp_path / "s.duckdb", 2)
    # another process holds a long write connection
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               "con = duckdb.connect('s.duckdb')\nprint('ready', flush=True)\ntime.sleep(60)"],
                              cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        run = invoke(["runs", "--store", "s.duckdb"], tmp_path, {"EVALHARNESS_LOCK_TIMEOUT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert run.exit_code == 2
    err = run.stderr.strip()
    assert "\n" not in err and err.startswith("error: s.duckdb: the store is locked by another process; waited 1 s")
    assert f"PID {holder.pid}" in err  # DuckDB names the holder
