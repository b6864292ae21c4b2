"""Claims measured on a board from the store (evalharness.claim_eval): names with seeds and grids, per-prompt quantities
paired over seeds and prompts, per-checkpoint metrics over seeds, and the stored verdicts found again for the board."""

import json

import pytest
from lbstore import add_metric, add_run, make_store

from evalharness import claim_eval as E
from evalharness.store_rows import ExperimentRecord
from leaderboards.board import LeaderboardConfig, build_leaderboard
from leaderboards.claims import Claim, parse_claim

PROMPTS = [f"p{i:02d}" for i in range(30)]
WIN, TIE, LOSS = ("first", "second"), ("tie", "tie"), ("second", "first")


def _pairs():
    """dpo (two seeds) beats the base on 27 of 30 prompts; sft (two seeds) wins, ties and loses a third each."""
    out = []
    for i, p in enumerate(PROMPTS):
        for seed in (0, 1):
            out.append((p, f"dpo{seed}", "base", *(WIN if (i + seed) % 10 else TIE)))
            out.append((p, f"sft{seed}", "base", *(WIN, TIE, LOSS)[(i + seed) % 3]))
    return out


@pytest.fixture
def board_store(tmp_path):
    labels = {f"{m}{s}": f"{m}-seed{s}:10" for m in ("dpo", "sft") for s in (0, 1)}
    store = make_store(tmp_path / "s.duckdb", _pairs(), judge="oracle", labels=labels)
    for ck, label in labels.items():
        add_run(store, ck, f"run-{ck}", label.split(":")[0], 10, ck[:3], {})
        add_metric(store, ck, "kl", {"dpo0": 0.5, "dpo1": 0.7, "sft0": 0.01, "sft1": 0.03}[ck], ci=(0.0, 1.0))
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=20, baseline="base"))
    return store, board


def test_names_are_labels_without_step_and_seed_and_a_grid_is_its_points():
    found = E.groups({"k1": "dpo-beta0.1-seed0:10", "k2": "dpo-beta0.1-seed1:10", "k3": "dpo-beta0.5:10",
                      "k4": "dpo-beta0.5@5", "k5": "dpo-rw:10"})
    assert found == {"dpo-beta0.1": {0: "k1", 1: "k2"}, "dpo-beta0.5": {0: "k3"}, "dpo-rw": {0: "k5"}}
    assert E.grid("dpo", found) == ["dpo-beta0.1", "dpo-beta0.5"] and E.grid("dpo-rw", found) == ["dpo-rw"]
    assert E.grid("ipo", found) == []


def test_win_rate_claims_pair_seeds_and_prompts_against_the_board_baseline(board_store):
    store, board = board_store
    claims = [Claim("dpo wins more", "win_rate", "dpo", "sft", "higher"),
              Claim("sft wins more", "win_rate", "sft", "dpo", "higher"),
              Claim("dpo's KL is higher", "kl", "dpo", "sft", "higher"),
              Claim("no such", "win_rate", "ipo", "sft", "higher")]
    out = E.evaluate_on_board(store.path, board.meta, claims, resamples=400)
    # dpo: 27 of 30 prompts won per seed, 3 tied -> 95%; sft: a third each -> 50%; difference 45 points
    assert out[0].verdict == "reproduced" and out[0].difference == pytest.approx(45.0)
    assert out[0].seeds == (2, 2) and out[0].prompts == 30
    assert out[1].verdict == "contradicted" and out[1].difference == pytest.approx(-45.0)
    # KL over two seeds a side: (0.5 + 0.7) / 2 - (0.01 + 0.03) / 2 = 0.58
    assert out[2].difference == pytest.approx(0.58) and out[2].verdict in ("reproduced", "inconclusive")
    assert out[3].verdict == "inconclusive" and out[3].note == "no configuration named 'ipo' on this board"


def test_the_baseline_is_a_configuration_for_what_is_measured_on_it_alone(tmp_path):
    labels = {"dpo0": "dpo-seed0:10", "dpo1": "dpo-seed1:10", "base": "sft:160"}
    pairs = [(p, f"dpo{s}", "base", *WIN) for p in PROMPTS for s in (0, 1)]
    store = make_store(tmp_path / "s.duckdb", pairs, judge="oracle", labels=labels)
    for ck, value in (("dpo0", 6.0), ("dpo1", 8.0), ("base", 2.5)):
        add_metric(store, ck, "perplexity", value, ci=(value - 0.5, value + 0.5), n=40)
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=20, baseline="base"))
    claims = [Claim("dpo's perplexity is higher than sft's", "perplexity", "dpo", "sft", "higher"),
              Claim("sft wins more than dpo", "win_rate", "sft", "dpo", "higher")]
    ppl, wins = E.evaluate_on_board(store.path, board.meta, claims, resamples=400)
    # dpo: the mean of its two seeds, 7.0; sft (the baseline, one checkpoint): 2.5
    assert ppl.difference == pytest.approx(4.5) and ppl.verdict in ("reproduced", "inconclusive")
    assert wins.verdict == "inconclusive" and wins.note == "win_rate of sft not measured on this board"


def test_stored_verdicts_are_found_again_for_the_board_of_the_experiment(board_store):
    store, board = board_store
    claim = parse_claim({"quantity": "win_rate", "a": "dpo", "relation": "higher", "b": "sft"}, "t")
    verdicts = E.evaluate_on_board(store.path, board.meta, [claim], resamples=200)
    runs = {f"{m}-seed{s}": f"run-{m}{s}" for m in ("dpo", "sft") for s in (0, 1)}
    store.upsert_experiment(ExperimentRecord("e1", "exp", "exp.toml", "{}", json.dumps(runs), "0", "finished"))
    store.upsert_experiment(ExperimentRecord("e2", "other", "o.toml", "{}", json.dumps({"x": "run-x"}), "0", "done"))
    E.store_verdicts(store, "e1", board.meta, verdicts)
    E.store_verdicts(store, "e2", board.meta, verdicts)  # an experiment none of whose runs is on the board
    (found,) = E.stored_for_board(store.path, board.meta, board.rows)
    assert found["experiment"] == "exp" and found["verdict"] == "reproduced" and found["form"] == "plain"
    assert found["difference"] == pytest.approx(45.0) and found["seeds"] == [2, 2]
    # a board row that stands for replicates finds them by its replicate keys
    grouped = [{"model": "dpo", "replicates": "dpo0,dpo1"}]
    assert len(E.stored_for_board(store.path, board.meta, grouped)) == 1
    assert E.stored_for_board(store.path, {**board.meta, "judge": "rm"}, board.rows) == []


def test_the_doctests_hold():
    import doctest

    result = doctest.testmod(E)
    assert result.attempted > 0 and result.failed == 0


def test_a_board_without_a_pairwise_judge_leaves_its_claims_inconclusive(tmp_path):
    (v,) = E.evaluate_on_board(str(tmp_path / "s.duckdb"), {"judge": None}, [Claim("t", "kl", "a", "b", "higher")])
    assert v.verdict == "inconclusive" and v.note == "the board has no pairwise judge to measure on"
