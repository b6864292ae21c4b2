"""Leaderboard statistics at scale: 1M stored judgment orders (500k pairs) over 20 models, 1,000 bootstrap resamples.

Builds a DuckDB store with synthetic judgments from a known Bradley-Terry truth (plus a position bias, ties and a few
unparsed orders), then times, separately:

- ``sql``: ``leaderboards.query.load_pairs`` — the combined verdict of every pair computed in SQL from the raw
  orders, with model/prompt indices and response lengths (the leaderboard's own code path);
- ``stats``: ``leaderboards.stats.board_stats`` on those arrays — win/tie/lose, win rate with SE and bootstrap CI,
  Bradley-Terry with bootstrap CI and the length-controlled win rate, all resamples in one vectorised pass;
- ``board``: ``build_leaderboard`` end to end (SQL, stats, metrics/provenance lookups, row assembly).

Peer: the same bootstrap written the usual way, one resample at a time (per-pair weights gathered from the same
resample counts, per-model bincounts, one Bradley-Terry fit per resample). It must give the same CIs to 1e-9; the
bench prints the time ratio. ``--peer-resamples`` (default 1000) bounds its run time.

    .venv/bin/python bench/leaderboard_1m.py [--orders 1000000] [--models 20] [--prompts 5000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalharness.store import Store  # noqa: E402
from leaderboards import query, stats  # noqa: E402
from leaderboards.board import LeaderboardConfig, build_leaderboard  # noqa: E402


def synthetic_store(path: str, orders: int, n_models: int, n_prompts: int, seed: int = 0) -> np.ndarray:
    """Write ``orders`` judgment rows (two orders per pair) and one generation per (model, prompt); return the true
    log-strengths (M,)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 0.5, n_models)
    n_pairs = orders // 2
    a = rng.integers(0, n_models, n_pairs)
    b = (a + rng.integers(1, n_models, n_pairs)) % n_models
    prompt = rng.integers(0, n_prompts, n_pairs)
    lengths = rng.integers(50, 1500, size=(n_models, n_prompts))
    pair = np.repeat(np.arange(n_pairs), 2)
    swapped = np.tile([False, True], n_pairs)
    first = np.where(swapped, b[pair], a[pair])
    second = np.where(swapped, a[pair], b[pair])
    # The judge: P(first wins) = sigmoid(theta_first - theta_second + 0.2 position bias); 5% ties, 0.5% unparsed.
    p_first = 1.0 / (1.0 + np.exp(-(theta[first] - theta[second] + 0.2)))
    u = rng.random(orders)
    verdict = np.where(u < p_first, "first", "second").astype(object)
    verdict[rng.random(orders) < 0.05] = "tie"
    verdict[rng.random(orders) < 0.005] = "unparsed"
    gen = lambda m, p: np.char.add(np.char.add("g", m.astype(str)), np.char.add("_", p.astype(str)))  # noqa: E731
    judgments = pd.DataFrame({
        "judgment_id": np.char.add("j", np.arange(orders).astype(str)),
        "pair_id": np.char.add("pair", pair.astype(str)),
        "prompt_id": np.char.add("p", prompt[pair].astype(str)),
        "model_a": np.char.add("m", a[pair].astype(str)), "model_b": np.char.add("m", b[pair].astype(str)),
        "swapped": swapped,
        "generation_first": gen(first, prompt[pair]), "generation_second": gen(second, prompt[pair]),
        "verdict": verdict, "probability": np.where(verdict == "unparsed", np.nan, p_first),
    })
    mm, pp = np.meshgrid(np.arange(n_models), np.arange(n_prompts), indexing="ij")
    generations = pd.DataFrame({"generation_id": gen(mm.ravel(), pp.ravel()),
                                "checkpoint": np.char.add("m", mm.ravel().astype(str)),
                                "prompt_id": np.char.add("p", pp.ravel().astype(str)),
                                "length": lengths.ravel()})
    store = Store(path)
    with store.transaction() as con:
        con.register("jd", judgments)
        con.register("gd", generations)
        con.execute("""
            INSERT INTO judgments (judgment_id, cache_key, judge, judge_version, template, prompt_id, turn,
                                   sample_index, pair_id, model_a, model_b, swapped, generation_first,
                                   generation_second, verdict, probability, created_at)
            SELECT judgment_id, judgment_id, 'synthetic', '1', '', prompt_id, 1, 0, pair_id, model_a, model_b,
                   swapped, generation_first, generation_second, verdict, probability, now() FROM jd""")
        con.execute("""
            INSERT INTO generations (generation_id, checkpoint, label, prompt_id, turn, sample_index, backend, text,
                                     n_tokens, created_at)
            SELECT generation_id, checkpoint, checkpoint, prompt_id, 1, 0, 'synthetic', repeat('x', length),
                   length // 4, now() FROM gd""")
    return theta


def peer_bootstrap(pairs: query.PairTable, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap one resample at a time (pooled mode, tie policy ``tie``): win-rate and BT samples (B, M)."""
    m = len(pairs.models)
    y, keep = stats.pair_outcomes(pairs.verdict, pairs.p_a, "tie")
    distinct = pairs.a != pairs.b
    model = np.concatenate([pairs.a[distinct], pairs.b[distinct]])
    ey = np.concatenate([y[distinct], 1 - y[distinct]])
    eprompt = np.concatenate([pairs.prompt[distinct], pairs.prompt[distinct]])
    mp, key, y_low = stats.model_pairs(pairs.a[distinct], pairs.b[distinct], y[distinct])
    bt_prompt = pairs.prompt[distinct]
    wr, bt = [], []
    for counts in stats.resample_counts(pairs.n_prompts, n_resamples, seed):
        for c in counts:
            w = c[eprompt]
            wr.append(np.bincount(model, w * ey, m) / np.bincount(model, w, m))
            wb = c[bt_prompt]
            wins = np.bincount(key, wb * y_low, len(mp))
            games = np.bincount(key, wb, len(mp))
            bt.append(stats.to_elo(stats.bt_fit(wins[None], games[None], mp, m))[0])
    return np.array(wr), np.array(bt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--prompts", type=int, default=5000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--peer-resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.duckdb")
        t0 = time.perf_counter()
        theta = synthetic_store(path, args.orders, args.models, args.prompts)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(f"store: {args.orders:,} orders, {args.models} models, {args.prompts:,} prompts "
              f"(built in {time.perf_counter() - t0:.1f} s)")

        sql_times, stat_times, stat_cpu = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with query.read_store(path) as con:
                variant = query.select_judge(query.judge_variants(con), None)
                pairs = query.load_pairs(con, variant)
            sql_times.append(time.perf_counter() - t0)
            t0, c0 = time.perf_counter(), time.process_time()
            s = stats.board_stats(pairs.a, pairs.b, pairs.prompt, pairs.verdict, pairs.p_a, pairs.len_a, pairs.len_b,
                                  len(pairs.models), pairs.n_prompts, None, "tie", args.resamples, 0)
            stat_times.append(time.perf_counter() - t0)
            stat_cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        build_leaderboard(path, LeaderboardConfig(n_resamples=args.resamples))
        board_time = time.perf_counter() - t0
        print(f"pairs: {len(pairs.a):,} ({pairs.invalid_orders:,} unparsed orders left out, "
              f"{pairs.single_order_pairs:,} pairs decided by one order)")
        print(f"sql   (load_pairs, combined verdicts in SQL): median {np.median(sql_times):.2f} s  "
              f"[{', '.join(f'{t:.2f}' for t in sql_times)}]")
        print(f"stats (board_stats, {args.resamples} resamples):      median {np.median(stat_times):.2f} s  "
              f"[{', '.join(f'{t:.2f}' for t in stat_times)}]  target < 5 s; CPU s (all threads) "
              f"[{', '.join(f'{t:.2f}' for t in stat_cpu)}]")
        print(f"board (build_leaderboard end to end):          {board_time:.2f} s")

        index = {int(k[1:]): i for i, k in enumerate(pairs.models)}
        truth = stats.ELO_SCALE * (theta - theta.mean())
        est = np.array([s.bt[index[m]] - 1000.0 for m in range(args.models)])
        print(f"Bradley-Terry vs the truth: max |error| {np.max(np.abs(est - truth)):.1f} Elo "
              f"(ties count half, which pulls ratings toward each other); mean 95% CI width "
              f"{np.mean(s.bt_high - s.bt_low):.1f} Elo; win-rate CI width {100 * np.mean(s.ci_high - s.ci_low):.2f} pp")

        n_peer = min(args.peer_resamples, args.resamples)
        t0, c0 = time.perf_counter(), time.process_time()
        wr_peer, bt_peer = peer_bootstrap(pairs, n_peer, 0)
        peer_time, peer_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        ours = stats.board_stats(pairs.a, pairs.b, pairs.prompt, pairs.verdict, pairs.p_a, pairs.len_a, pairs.len_b,
                                 len(pairs.models), pairs.n_prompts, None, "tie", n_peer, 0)
        ours_time, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
        lo, hi = stats.percentile_ci(wr_peer)
        blo, bhi = stats.percentile_ci(bt_peer)
        same = max(np.max(np.abs(lo - ours.ci_low)), np.max(np.abs(hi - ours.ci_high)),
                   np.max(np.abs(blo - ours.bt_low)) / 1000, np.max(np.abs(bhi - ours.bt_high)) / 1000)
        print(f"peer (one resample at a time), {n_peer} resamples: {peer_time:.2f} s vs board_stats {ours_time:.2f} s "
              f"-> {peer_time / ours_time:.1f}x wall, CPU {peer_cpu:.2f} s vs {ours_cpu:.2f} s -> "
              f"{peer_cpu / ours_cpu:.1f}x; max CI difference {same:.1e} (win rate, Elo/1000)")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        if same > 1e-9:
            raise SystemExit("the vectorised bootstrap and the peer disagree")


if __name__ == "__main__":
    main()
