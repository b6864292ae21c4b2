"""``kill -9`` of real ``evalharness`` processes at chosen points, then re-runs: the store and the weights end up as an
uninterrupted run leaves them (no lost rows, no duplicates, same numbers).

Each test runs the command once uninterrupted in one directory (in this process), and in another directory starts it
as a subprocess, SIGKILLs it as soon as an observable point is reached (a file appears, the store holds N rows, the
judge endpoint saw N requests), starts it again (a resume) and kills that too at a later point, then lets a last
re-run finish (in this process: it needs no kill). Kill points are observable states, not delays, so they do not move
with the machine's speed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from tests.judges.loopback import Loopback, mt_bench_judge, prefer_longer
from tests.reliability.helpers import (
    Started,
    assert_same_rows,
    cli_env,
    count,
    files_under,
    invoke,
    max_weight_diff,
    snapshot,
)

# ------------------------------------------------------------------------------------------------------------ train

TRAIN = ["train", "--loss", "dpo", "--limit", "24", "--max-steps", "6", "--save-every", "2", "--batch-size", "2",
         "--lr", "1e-3", "--max-length", "64", "--max-prompt-length", "32", "--name", "k", "--no-progress",
         "--store", "s.duckdb"]
TRAIN_TABLES = ["runs", "checkpoints", "train_metrics", "reference_logps"]


def _train_tables(store: Path) -> dict[str, list[tuple]]:
    snap = snapshot(store, TRAIN_TABLES, root=store.parent)  # checkpoint paths are absolute
    # tokens/s is a wall-clock rate: only its presence is comparable
    snap["train_metrics"] = [(r, s, n, None if n == "tokens_per_s" else v) for r, s, n, v in snap["train_metrics"]]
    return snap


@pytest.mark.slow
@pytest.mark.ci
def test_train_killed_during_and_after_a_checkpoint_resumes_to_the_same_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    done = invoke(TRAIN, full)
    assert done.exit_code == 0, done.output

    run = cut / "runs" / "k"
    # 1. the first checkpoint is on disk; the store may not have heard of it yet
    Started(TRAIN, cut).kill_when(lambda: (run / "checkpoint-000002").exists(), "checkpoint 2")
    # 2. in the middle of writing checkpoint 4 (the temporary directory exists, the state file is not there yet)
    Started(TRAIN, cut).kill_when(lambda: (run / ".tmp-checkpoint-000004").exists()
                                  or (run / "checkpoint-000004").exists(), "checkpoint 4 being written")
    last = invoke(TRAIN, cut)  # the last re-run needs no kill: it runs in this process
    code, out = last.exit_code, last.stdout
    assert code == 0, last.output
    assert "resumed from step 2" in out or "resumed from step 4" in out, out

    got, want = _train_tables(cut / "s.duckdb"), _train_tables(full / "s.duckdb")
    for table in TRAIN_TABLES:
        assert_same_rows(got[table], want[table], table, abs_=1e-6)
    assert files_under(cut / "runs") == files_under(full / "runs")  # every checkpoint, no temporary leftovers
    for step in (2, 4, 6):
        name = f"checkpoint-{step:06d}"
        assert max_weight_diff(run / name, full / "runs" / "k" / name) <= 1e-6, name
    again = invoke(TRAIN, cut)
    assert again.exit_code == 0 and "already finished at step 6" in again.stdout


# --------------------------------------------------------------------------------------------------------- generate

GENERATE = ["generate", "-c", "tiny-llama", "--prompts", "synthetic", "--limit", "48", "--n", "2", "--temperature",
            "1.0", "--max-new-tokens", "4", "--max-prompt-length", "16", "--backend", "hf", "--batch-size", "16",
            "--no-progress", "--store", "s.duckdb"]


@pytest.mark.slow
@pytest.mark.ci
def test_generate_killed_while_sampling_and_while_scoring_resumes_to_the_same_samples(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    done = invoke(GENERATE, full)
    assert done.exit_code == 0, done.output
    assert "96 samples (96 new" in done.stdout
    store = cut / "s.duckdb"
    # 48 prompts x 2 samples = 96 requests, written in chunks of 64: kill after the first chunk is stored
    Started(GENERATE, cut).kill_when(lambda: count(store, "SELECT count(*) FROM generations") >= 64,
                                     "the first chunk of samples")
    assert count(store, "SELECT count(*) FROM generations") == 64
    # the resumed run samples the other 32, then reference-scores all 96 in batches of 16: kill in the middle
    Started(GENERATE, cut).kill_when(
        lambda: count(store, "SELECT count(*) FROM generations WHERE reference_logp IS NOT NULL") >= 16,
        "the first reference-scored batch")
    last = invoke(GENERATE, cut)
    code, out = last.exit_code, last.stdout
    assert code == 0, last.output
    assert "96 samples (0 new, 96 from the store)" in out, out

    got, want = snapshot(store, ["prompts", "generations"]), snapshot(full / "s.duckdb", ["prompts", "generations"])
    assert got["prompts"] == want["prompts"]
    # Sampled tokens are exact (per-request seeds); log-probs come from batches of other shapes, so the last bits move.
    assert_same_rows(got["generations"], want["generations"], "generations", abs_=1e-4)


# ------------------------------------------------------------------------------------------------------------ judge

KEY = "sk-reliability-kill-0123456789"


def seed_pairs(store: Path, n_prompts: int) -> None:
    """Two sampled models on ``n_prompts`` prompts of a prompt set 'set': one sample each, lengths that differ."""
    from evalharness.hashing import content_hash
    from evalharness.store import Store, bulk_insert, now

    s = Store(str(store))
    with s.transaction() as con:
        prompts, gens = [], []
        for i in range(n_prompts):
            pid = f"p{i:03d}"
            # the synthetic task's prompt form: the oracle judges these without warning that they are another task's
            messages = [{"role": "user", "content": f"Write a short review of item {i}."}]
            prompts.append((pid, "set", pid, json.dumps(messages), None, "{}"))
            for label, text in (("a", "fine " * (1 + i % 3)), ("b", "ok " * (1 + i % 5))):
                gens.append((content_hash([label, pid]), f"ck-{label}", label, None, pid, 1, 0, '{"t": 1}', 1.0, "hf",
                             None, None, text.strip(), None, len(text.split()), "stop", False, None, None, None, None,
                             now()))
        bulk_insert(con, "INSERT INTO prompts", prompts)
        bulk_insert(con, "INSERT INTO generations", gens)


class Gate:
    """Makes the loopback endpoint stop answering after ``after`` requests, so a run can be killed mid-chunk."""

    def __init__(self, server: Loopback, after: int | None = None):
        self.server = server
        self.after, self.seen = after, 0
        self.lock = threading.Lock()
        decide = mt_bench_judge(prefer_longer)

        def behaviour(req):
            with self.lock:
                self.seen += 1
                hold = self.after is not None and self.seen > self.after
            reply = decide(req)
            return dataclasses.replace(reply, delay=120.0) if hold else reply  # answers long after the kill

        server.behaviour = behaviour

    def reset(self, after: int | None) -> None:
        """Wait until no request of the killed client is still arriving, then count afresh."""
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 0.3:
            if len(self.server.requests) != seen:
                seen, quiet_since = len(self.server.requests), time.monotonic()
            time.sleep(0.02)
        with self.lock:
            self.after, self.seen = after, 0


def _judge_args(url: str) -> list[str]:
    return ["judge", "--judge", "llm:model=loop,backoff=0.01,max_retries=1", "--base-url", url, "--models", "a",
            "--baseline", "b", "--prompts", "set", "--no-progress", "--no-leaderboard", "--store", "s.duckdb"]


def test_judge_killed_mid_chunk_resumes_without_repeating_stored_verdicts(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    for d in (full, cut):
        seed_pairs(d / "s.duckdb", 100)  # 100 pairs x 2 orders = 200 judgments, written in chunks of 64
    env = cli_env({"OPENAI_API_KEY": KEY})
    with Loopback() as server:
        gate = Gate(server)
        done = invoke(_judge_args(server.url), full, {"OPENAI_API_KEY": KEY})
        assert done.exit_code == 0, done.output
        assert "200 judgments (0 already stored, 0 reused from the cache, 200 judged now), 0 failed" in done.stdout
        assert len(server.completions) == 200

        store = cut / "s.duckdb"
        stored = "SELECT count(*) FROM judgments"
        gate.reset(after=70)  # the first chunk (64) is answered and written; the second hangs after 6 answers
        Started(_judge_args(server.url), cut, env).kill_when(
            lambda: gate.seen > 70 and count(store, stored) == 64, "chunk 1 stored, chunk 2 in flight")
        gate.reset(after=64 + 10)  # the resume's first chunk completes (rows 65-128), its second hangs
        Started(_judge_args(server.url), cut, env).kill_when(
            lambda: gate.seen > 74 and count(store, stored) == 128, "chunk 2 stored, chunk 3 in flight")
        gate.reset(after=None)
        last = invoke(_judge_args(server.url), cut, {"OPENAI_API_KEY": KEY})
    code, out = last.exit_code, last.stdout
    assert code == 0, last.output
    # the last run asks only for what no earlier run stored: 200 - 128
    assert "200 judgments (128 already stored, 0 reused from the cache, 72 judged now), 0 failed" in out, out
    assert gate.seen == 72
    tables = ["judgments"]
    assert snapshot(store, tables) == snapshot(full / "s.duckdb", tables)


# ---------------------------------------------------------------------------------------------------------- run

EXPERIMENT = """
name = "kill"
[defaults]
model = "tiny-llama"
max_steps = 2
batch_size = 2
max_length = 64
max_prompt_length = 32
lr = 1e-3
[defaults.data]
name = "synthetic"
limit = 12
eval_fraction = 0.0

[[runs]]
name = "sft"
loss = "sft"

[[runs]]
name = "dpo"
loss = "dpo"
init_from = "sft"

[generate]
limit = 6
n = 1
max_new_tokens = 6
backend = "hf"

[judge]
judges = ["llm:model=loop,base_url=URL,backoff=0.01,max_retries=1"]
baseline = "base"
"""
RUN_TABLES = ["runs", "checkpoints", "reference_logps", "prompts", "generations", "judgments", "experiments"]


def _run_tables(store: Path) -> dict[str, list[tuple]]:
    snap = snapshot(store, RUN_TABLES, root=store.parent)
    metrics = snapshot(store, ["train_metrics"])["train_metrics"]
    snap["train_metrics"] = [(r, s, n, None if n == "tokens_per_s" else v) for r, s, n, v in metrics]
    return snap


@pytest.mark.slow
@pytest.mark.ci
def test_run_killed_while_training_and_while_judging_resumes_to_the_same_store(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    env = cli_env({"OPENAI_API_KEY": KEY})
    with Loopback() as server:
        gate = Gate(server)
        for d in (full, cut):
            (d / "exp.toml").write_text(EXPERIMENT.replace("URL", server.url))
        args = ["run", "exp.toml", "--no-progress", "--store", "s.duckdb"]
        done = invoke(args, full, {"OPENAI_API_KEY": KEY})
        assert done.exit_code == 0, done.output
        # 2 policies vs the base model on 6 prompts, both orders
        assert "12 pairs, 24 judgments" in done.stdout, done.stdout
        assert gate.seen == 24

        store = cut / "s.duckdb"
        runs = cut / "runs" / "kill"
        # training: sft's final checkpoint is on disk, dpo has not started (killing `generate` is tested above)
        Started(args, cut, env).kill_when(lambda: (runs / "sft" / "checkpoint-000002").exists(), "sft's checkpoint")
        # judging: every model is sampled; the endpoint stops answering after 5 requests, so nothing is judged yet
        gate.reset(after=5)
        Started(args, cut, env).kill_when(lambda: gate.seen > 5, "judging in flight")
        gate.reset(after=None)
        last = invoke(args, cut, {"OPENAI_API_KEY": KEY})
    code, out = last.exit_code, last.stdout
    assert code == 0, last.output
    assert "24 judgments (0 already stored" in out and gate.seen == 24, out
    got, want = _run_tables(store), _run_tables(full / "s.duckdb")
    for table in got:
        assert_same_rows(got[table], want[table], table, abs_=1e-4)
    for name in ("sft", "dpo"):
        ckpt = Path("runs") / "kill" / name / "checkpoint-000002"
        assert max_weight_diff(cut / ckpt, full / ckpt) <= 1e-6
