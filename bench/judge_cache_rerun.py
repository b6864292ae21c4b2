"""A judge re-run served fully from the store: its time against the first run's, and the requests it sends (none).

    .venv/bin/python bench/judge_cache_rerun.py                       # llm judge, 4 models x 200 prompts: ~40 s
    .venv/bin/python bench/judge_cache_rerun.py --prompts 2000 --models 20 --judge length   # 76,000 orders

A store is made with ``--models`` labels, each with one sample for each of ``--prompts`` prompts, and every model is
judged against the first (``--baseline m0``) in both orders, so a run asks for 2 x (models - 1) x prompts verdicts.

- ``--judge llm`` (default): the llm judge against the test suite's loopback endpoint (a real HTTP/1.1 server in a
  child process, answering after ``--latency`` seconds) at ``--concurrency``. The server counts the requests it gets.
- ``--judge length``: a pairwise judge registered in this process that prefers the longer text: no network, so
  the first run is cheap and the re-run's own cost (cache keys, one store query) shows at scale.

Then the same ``judge()`` call again (in process, as ``evalharness run`` makes it) and, for the llm judge, the same
command through the CLI in a new process (what a user re-running ``evalharness judge`` waits for, imports included),
beside the CLI's own start-up (``evalharness judge --help``). The re-runs must make no judge call and send no
request; the bench fails otherwise. The peer is the first run: the ratio is what the cache saves. For the llm judge
the first run is also set against its concurrency-limited ideal, ceil(requests / concurrency) x latency (as
``bench/judge_llm_concurrency.py`` defines it): the whole run counts, imports and store reads included.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.judges.loopback, when the bench runs from a checkout

from evalharness import plugins  # noqa: E402
from evalharness.hashing import content_hash  # noqa: E402
from evalharness.judging import JudgeConfig, judge  # noqa: E402
from evalharness.store import Store, bulk_insert, now  # noqa: E402
from judges.base import Verdict  # noqa: E402

PROMPT_SET = "bench"
WORDS = ("clear", "kind", "short", "careful", "useful", "plain", "exact", "warm", "honest", "brief")


class LengthJudge:
    """Prefers the longer response; a tie on equal length. Counts what it is asked."""

    id, version, template = "length", "1", ""
    asked = 0

    def __init__(self, **_):
        pass

    def compare(self, items):
        LengthJudge.asked += len(items)
        return [Verdict("tie" if len(c.first) == len(c.second) else "first" if len(c.first) > len(c.second)
                        else "second") for c in items]


def make_store(path: str, n_models: int, n_prompts: int) -> Store:
    """Prompts ``p<i>`` and one sample per (model, prompt), of 8-80 words."""
    store = Store(path)
    prompts, generations = [], []
    for i in range(n_prompts):
        messages = json.dumps([{"role": "user", "content": f"Question {i}: give advice on topic {i % 97}."}])
        prompts.append((f"p{i}", PROMPT_SET, f"p{i}", messages, None, "{}"))
        for m in range(n_models):
            n = 8 + (i * 7 + m * 13) % 73
            text = " ".join(WORDS[(i + m + k) % len(WORDS)] for k in range(n)) + "."
            generations.append((content_hash(["bench", m, i]), f"m{m}", f"m{m}", f"p{i}", 1, 0, 1.0, "bench", text,
                                n, "stop", now()))
    with store.transaction() as con:  # one statement per table (executemany is a statement per row: minutes here)
        bulk_insert(con, "INSERT INTO prompts", prompts)
        bulk_insert(con, "INSERT INTO generations (generation_id, checkpoint, label, prompt_id, turn, sample_index, "
                         "temperature, backend, text, n_tokens, finish_reason, created_at)", generations)
    return store


def timed_judge(cfg: JudgeConfig, store: Store):
    start = time.perf_counter()
    report = judge(cfg, store, progress=False)
    return time.perf_counter() - start, report


def cli_run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "evalharness", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"evalharness {' '.join(args[:1])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge", choices=["llm", "length"], default="llm")
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05, help="llm judge: the endpoint's latency per request (s)")
    ap.add_argument("--concurrency", type=int, default=16, help="llm judge: requests in flight")
    ap.add_argument("--repeats", type=int, default=3, help="timed re-runs (median)")
    args = ap.parse_args()

    load = os.getloadavg()
    models = [f"m{m}" for m in range(1, args.models)]
    with tempfile.TemporaryDirectory() as tmp:
        store_path = os.path.join(tmp, "bench.duckdb")
        store = make_store(store_path, args.models, args.prompts)
        server = None
        if args.judge == "llm":
            from bench.judge_llm_concurrency import ChildServer

            server = ChildServer(args.latency)
            spec = f"llm:model=loopback,base_url={server.url},concurrency={args.concurrency},max_retries=0"
            os.environ.setdefault("OPENAI_API_KEY", "sk-bench-placeholder")  # the loopback checks no key
        else:
            plugins.registry("judges").add("length", LengthJudge, "bench judge", source="bench")
            spec = "length"
        cfg = JudgeConfig(spec, models, baseline="m0", prompts=PROMPT_SET)
        try:
            first, report = timed_judge(cfg, store)
            requests_first = server.take_requests() if server else LengthJudge.asked
            if report.called != report.judgments or report.failed:
                raise SystemExit(f"the first run should judge everything: {report}")
            reruns = []
            for _ in range(args.repeats):
                elapsed, again = timed_judge(cfg, store)
                sent = server.take_requests() if server else LengthJudge.asked - requests_first
                if again.called or sent:
                    raise SystemExit(f"a re-run called the judge {again.called} times ({sent} requests): {again}")
                reruns.append(elapsed)
            cli = help_floor = None
            if server:
                env = {**os.environ, "EVALHARNESS_STORE": store_path}
                command = ["judge", "--judge", spec, "--models", ",".join(models), "--baseline", "m0",
                           "--prompts", PROMPT_SET, "--no-progress", "--no-leaderboard"]
                cli = statistics.median(cli_run(command, env) for _ in range(args.repeats))
                if server.take_requests():
                    raise SystemExit("the CLI re-run sent requests")
                help_floor = statistics.median(cli_run(["judge", "--help"], env) for _ in range(args.repeats))
        finally:
            if server:
                server.close()
        rerun = statistics.median(reruns)

    n = report.judgments
    print(f"# judge re-run from the cache: judge {args.judge}, {args.models} models x {args.prompts} prompts "
          f"(baseline m0) = {n} orders"
          + (f", endpoint latency {args.latency * 1e3:.0f} ms, concurrency {args.concurrency}" if server else "")
          + f"; median of {args.repeats} re-runs; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print("| run | time (s) | judge calls | requests sent | per order (ms) |")
    print("|---|---|---|---|---|")
    print(f"| first | {first:.3f} | {report.called} | {requests_first} | {first / n * 1e3:.3f} |")
    print(f"| re-run, in process | {rerun:.3f} | 0 | 0 | {rerun / n * 1e3:.3f} |")
    if cli is not None:
        print(f"| re-run, `evalharness judge` (new process) | {cli:.3f} | 0 | 0 | {cli / n * 1e3:.3f} |")
        print(f"| `evalharness judge --help` (start-up only) | {help_floor:.3f} | — | — | — |")
    print()
    if server:  # the first run against what its endpoint allows (``bench/judge_llm_concurrency.py``'s ideal)
        ideal = math.ceil(requests_first / args.concurrency) * args.latency
        print(f"first run / concurrency-limited ideal ceil({requests_first}/{args.concurrency}) x "
              f"{args.latency * 1e3:.0f} ms = {ideal:.3f} s: efficiency {ideal / first:.0%}")
    print(f"first / re-run in process: {first / rerun:.1f}x")
    if cli is not None:
        print(f"first / CLI re-run: {first / cli:.1f}x; CLI re-run minus start-up: {cli - help_floor:.3f} s")


if __name__ == "__main__":
    main()
