"""SQL over the store: combined verdicts from raw orders, judge selection, metrics and provenance beside win rates."""

import itertools
import json

import numpy as np
import pytest
from lbstore import add_metric, add_run, make_store

from leaderboards import query, stats
from leaderboards.board import LeaderboardConfig, build_leaderboard
from leaderboards.query import LeaderboardError

# m1 against base, raw verdicts as stored (positions as shown):
#   p1: m1 first -> "first" (m1), base first -> "second" (m1)   -> m1 wins
#   p2: "first" (m1), "first" (base)                            -> tie (the orders disagree)
#   p3: "second" (base), "first" (base)                         -> base wins
#   p4: "tie", "second" (m1)                                    -> tie (one order says tie)
#   p5: "unparsed", "second" (m1)                               -> m1 wins on its one valid order
#   p6: "failed", "failed"                                      -> no valid order: dropped, counted
# m1: 2 wins, 2 ties, 1 loss over 5 pairs; win rate (2 + 2/2)/5 = 60%; W/T/L = 40/40/20 %.
SPEC = [
    ("p1", "m1", "base", "first", "second"),
    ("p2", "m1", "base", "first", "first"),
    ("p3", "m1", "base", "second", "first"),
    ("p4", "m1", "base", "tie", "second"),
    ("p5", "m1", "base", "unparsed", "second"),
    ("p6", "m1", "base", "failed", "failed"),
]


def _row(board, model):
    return next(r for r in board.rows if r["model"] == model)


def test_leaderboard_counts_from_raw_verdicts(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC)
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=100))
    m1 = _row(board, "m1")
    assert (m1["wins"], m1["ties"], m1["losses"], m1["n"]) == (2, 2, 1, 5)
    assert (m1["win_pct"], m1["tie_pct"], m1["loss_pct"]) == pytest.approx((40.0, 40.0, 20.0))
    assert m1["win_rate"] == pytest.approx(60.0)
    assert _row(board, "base")["baseline"] is True  # every pair has base as B: the runner's baseline mode
    meta = board.meta
    assert (meta["pairs"], meta["orders"], meta["invalid_orders"], meta["unusable_pairs"]) == (5, 12, 3, 1)
    assert meta["single_order_pairs"] == 1


def test_sql_combination_equals_the_numpy_rule_on_random_orders(tmp_path):
    rng = np.random.default_rng(0)
    choices = ["first", "second", "tie", "unparsed", "failed", None]
    weights = [0.35, 0.35, 0.1, 0.05, 0.05, 0.1]
    spec = []
    for i, (a, b) in itertools.product(range(40), [("m1", "m2"), ("m2", "m3"), ("m1", "m3")]):
        o1, o2 = rng.choice(len(choices), size=2, p=weights)
        spec.append((f"p{i}", a, b, choices[o1], choices[o2]))
    store = make_store(tmp_path / "s.duckdb", spec)
    with query.read_store(store.path) as con:
        variant = query.select_judge(query.judge_variants(con), None)
        pairs = query.load_pairs(con, variant)
    # The same rule in numpy over the same spec, order by order.
    pair_of, scores, keys = [], [], {}
    for pid, a, b, v1, v2 in spec:
        for swapped, v in ((False, v1), (True, v2)):
            if v is None:
                continue
            pair_of.append(keys.setdefault((pid, a, b), len(keys)))
            scores.append({"tie": 0.5, "first": 0.0 if swapped else 1.0, "second": 1.0 if swapped else 0.0}.get(v, np.nan))
    combined = stats.combine_orders(np.array(pair_of), np.array(scores))
    expected = {k: int(combined.verdict[i]) for k, i in keys.items() if combined.n_valid[i] > 0}
    got = {(pairs.prompt_ids[pr], pairs.models[a], pairs.models[b]): int(v)
           for a, b, pr, v in zip(pairs.a, pairs.b, pairs.prompt, pairs.verdict)}
    assert len(got) == len(expected) and got == expected


def test_judge_selection(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC, judge="gpt-4", version="1")
    make_store(None, SPEC, judge="gpt-4", version="2", store=store)
    make_store(None, SPEC[:2], judge="pairrm", store=store)
    with pytest.raises(LeaderboardError, match="3 judges; choose one with --judge"):
        build_leaderboard(store.path, LeaderboardConfig())
    with pytest.raises(LeaderboardError, match="2 versions or templates here; name one as JUDGE@VERSION"):
        build_leaderboard(store.path, LeaderboardConfig(judge="gpt-4"))
    with pytest.raises(LeaderboardError, match="did you mean 'pairrm'"):
        build_leaderboard(store.path, LeaderboardConfig(judge="pairm"))
    board = build_leaderboard(store.path, LeaderboardConfig(judge="gpt-4@2", n_resamples=10))
    assert board.meta["judge_version"] == "2" and _row(board, "m1")["n"] == 5
    assert _row(build_leaderboard(store.path, LeaderboardConfig(judge="pairrm", n_resamples=10)), "m1")["n"] == 2


def test_baseline_by_label_and_pooled_mode(tmp_path):
    spec = [("p1", "m1", "m2", "first", "second"), ("p2", "m2", "m3", "first", "second"),
            ("p3", "m1", "m3", "first", "second")]
    store = make_store(tmp_path / "s.duckdb", spec, labels={"m3": "the-base"})
    pooled = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    assert pooled.meta["baseline"] is None  # m2 is both A and B: no runner baseline
    assert [r["model"] for r in pooled.rows] == ["m1", "m2", "m3"]  # 2/2, 1/2, 0/2
    assert [r["win_rate"] for r in pooled.rows] == pytest.approx([100.0, 50.0, 0.0])
    based = build_leaderboard(store.path, LeaderboardConfig(baseline="the-base", n_resamples=10))
    assert based.meta["baseline"] == "m3" and _row(based, "m3")["bt"] == 1000.0
    assert _row(based, "m1")["n"] == 1 and _row(based, "m2")["n"] == 1  # m1-m2 counts only in Bradley-Terry
    with pytest.raises(LeaderboardError, match="no model 'the-bse'.*did you mean 'the-base'"):
        build_leaderboard(store.path, LeaderboardConfig(baseline="the-bse"))


def test_metrics_and_provenance_beside_the_win_rates(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC)
    add_metric(store, "m1", "perplexity", 12.5, ci=(11.0, 14.0), n=64)
    add_metric(store, "m1", "kl", 3.25)
    add_metric(store, "m1", "logp_margin", 9.0)  # not a leaderboard metric
    add_run(store, "m1", "run-1", "dpo-small", 200, "dpo", {"beta": 0.1, "label_smoothing": 0.0})
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    m1, base = _row(board, "m1"), _row(board, "base")
    assert (m1["perplexity"], m1["perplexity_ci_low"], m1["perplexity_ci_high"], m1["perplexity_n"]) == (
        12.5, 11.0, 14.0, 64)
    assert m1["kl"] == 3.25 and m1["kl_ci_low"] is None and m1["agility"] is None and "logp_margin" not in m1
    assert (m1["run"], m1["step"], m1["loss"], m1["beta"], m1["base_model"]) == ("dpo-small", 200, "dpo", 0.1,
                                                                                  "tiny-llama")
    assert json.loads(m1["params"]) == {"beta": 0.1, "label_smoothing": 0.0}
    assert base["run"] is None and base["perplexity"] is None


def test_prompt_set_filter_and_metrics_only_board(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC[:3], prompt_set="a")
    make_store(None, [("q1", "m1", "base", "second", "first")], prompt_set="b", store=store)
    only_b = build_leaderboard(store.path, LeaderboardConfig(prompt_set="b", n_resamples=10))
    assert (_row(only_b, "m1")["losses"], _row(only_b, "m1")["n"]) == (1, 1)
    with pytest.raises(LeaderboardError, match="no judgments in the store on prompt set 'c'"):
        build_leaderboard(store.path, LeaderboardConfig(prompt_set="c"))
    empty = make_store(tmp_path / "e.duckdb", [])
    add_metric(empty, "ck", "perplexity", 3.0, label="sft:100")
    board = build_leaderboard(empty.path, LeaderboardConfig())
    assert [(r["label"], r["perplexity"]) for r in board.rows] == [("sft:100", 3.0)]
    assert "metrics and provenance only" in board.meta["notes"][0]
