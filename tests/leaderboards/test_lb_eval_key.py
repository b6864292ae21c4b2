"""Every number on a board comes from one evaluation: judge variant and template, prompt set, turn, sampling setting;
KL of those samples; perplexity and margins of one held-out set. Several candidates: exit 2, listed, with the flag."""

import dataclasses
import json

import pytest
from lbstore import add_metric, make_store
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.evaluation import EvalConfig
from evalharness.evaluation.common import CheckpointReport, LazyModel
from evalharness.evaluation.samples import sample_metrics
from evalharness.generate import Target
from evalharness.generation.base import Sampling
from evalharness.hashing import content_hash
from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store
from evalharness.store_rows import GenerationRecord, PromptRecord
from leaderboards.board import LeaderboardConfig, build_leaderboard
from leaderboards.plots import reward_points
from leaderboards.query import LeaderboardError, read_store
from tests.judges.longer import longer_judge  # noqa: F401

runner = CliRunner()
SETS = {"synthetic": [f"s{i}" for i in range(6)], "mt-bench": [f"q{i}" for i in range(4)]}


def _sampling(t: float) -> str:
    return json.dumps(dataclasses.asdict(Sampling(temperature=t)))  # as `generate` stores it


def _kl_gap(prompt_set: str, t: float) -> float:
    """policy - reference log-prob of every sample of one evaluation: a different KL for each of the four."""
    return {("synthetic", 0.8): 0.25, ("synthetic", 1.0): 0.5, ("mt-bench", 0.8): 1.0, ("mt-bench", 1.0): 2.0}[
        (prompt_set, t)]


def _sample(store: Store, prompt_set: str, t: float) -> None:
    """Samples of m and base on one prompt set at one temperature. At T=0.8 m is shorter than base on every third
    prompt and longer on the others; at T=1.0 it is shorter everywhere."""
    pids = SETS[prompt_set]
    store.insert_prompts([PromptRecord(content_hash([prompt_set, p]), prompt_set, p,
                                       json.dumps([{"role": "user", "content": f"question {p}"}]), None, "{}")
                          for p in pids])
    rows = []
    for model in ("m", "base"):
        for i, p in enumerate(pids):
            n = 7 if model == "base" else (5 + 3 * (i % 3) if t == 0.8 else 4)
            text = f"{prompt_set} {p} " + "x" * n
            lp = -10.0 - i
            rows.append(GenerationRecord(content_hash([model, prompt_set, p, t]), f"ck-{model}", model, None,
                                         content_hash([prompt_set, p]), 1, 0, _sampling(t), t, "hf", None, None, text,
                                         None, n, "stop", False, lp, None, "model:ref",
                                         lp - _kl_gap(prompt_set, t)))
    store.insert_generations(rows)


def _judge_and_eval(store: Store, prompt_set: str, t: float | None) -> None:
    asked = {"temperature": t} if t is not None else {}
    judge(JudgeConfig("longer", ["m"], baseline="base", prompts=prompt_set, **asked), store, progress=False)
    for key in ("ck-m", "ck-base"):
        cfg = EvalConfig([key], metrics=("kl",), bootstrap=20, prompts=prompt_set)
        sample_metrics(cfg, store, Target(key, key, "unused", None), ["kl"], LazyModel("unused"),
                       CheckpointReport(key, key), False)


def _board(store: Store, *flags) -> tuple[int, str, str]:
    result = runner.invoke(app, ["leaderboard", "--store", store.path, "--bootstrap", "30", "--format", "json",
                                 *flags], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_store_of_four_evaluations_gives_exactly_the_board_of_the_selected_one(tmp_path):
    full = Store(str(tmp_path / "full.duckdb"))
    evaluations = [("synthetic", 0.8), ("synthetic", 1.0), ("mt-bench", 0.8), ("mt-bench", 1.0)]
    for prompt_set, t in evaluations:
        _sample(full, prompt_set, t)
    for prompt_set, t in evaluations:  # the mt-bench T=1.0 KL is the one stored last
        _judge_and_eval(full, prompt_set, t)
    only = Store(str(tmp_path / "only.duckdb"))
    _sample(only, "synthetic", 0.8)
    _judge_and_eval(only, "synthetic", None)

    code, out, err = _board(full, "--prompts", "synthetic")
    assert code == 2 and err.count("\n") == 1
    assert "judge longer@1's pairs on 'synthetic' were sampled at 2 settings: T=0.8, top_p 1, 256 new tokens, seed 0" in err
    assert "T=1, top_p 1" in err and err.strip().endswith("choose one with --temperature")
    code, _, err = _board(full)
    assert code == 2 and "2 prompt sets: mt-bench (8 pairs), synthetic (12 pairs); choose one with --prompts" in err

    code, chosen, err = _board(full, "--prompts", "synthetic", "--temperature", "0.8")
    assert code == 0, err
    code, alone, err = _board(only)
    assert code == 0, err
    assert json.loads(chosen) == json.loads(alone)
    board = json.loads(chosen)
    meta, m = board["meta"], next(r for r in board["rows"] if r["model"] == "ck-m")
    # 6 prompts, one pair each, both orders; m wins 4 (the prompts where it is longer), loses 2
    assert (meta["pairs"], meta["orders"], meta["temperature"], meta["prompt_set"]) == (6, 12, 0.8, "synthetic")
    assert (m["wins"], m["losses"], m["win_rate"]) == (4, 2, pytest.approx(100 * 4 / 6))
    assert meta["kl_from"] == "synthetic at T=0.8, top_p 1, 256 new tokens, seed 0"
    assert m["kl"] == pytest.approx(0.25) and m["temperature"] == 0.8 and m["prompt_set"] == "synthetic"
    assert "on synthetic, turn 1, T=0.8" in board["title"]


def test_kl_comes_from_the_boards_own_samples_not_the_latest_row(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    _sample(store, "synthetic", 0.8)
    _judge_and_eval(store, "synthetic", None)
    for prompt_set, t in (("synthetic", 1.0), ("mt-bench", 1.0)):  # later KL rows of other evaluations, unjudged
        _sample(store, prompt_set, t)
        cfg = EvalConfig(["ck-m"], metrics=("kl",), bootstrap=20, prompts=prompt_set)
        sample_metrics(cfg, store, Target("ck-m", "m", "unused", None), ["kl"], LazyModel("unused"),
                       CheckpointReport("m", "ck-m"), False)
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10, prompt_set="synthetic"))
    assert {r["model"]: r["kl"] for r in board.rows}["ck-m"] == pytest.approx(0.25)


def test_pairs_sampled_at_two_settings_are_left_out_and_counted(tmp_path):
    t08, t1 = _sampling(0.8), _sampling(1.0)
    spec = [(f"p{i}", "m2", "base", "first", "second") for i in range(3)]
    store = make_store(tmp_path / "s.duckdb", spec, sampling={"m2": t08, "base": t08})
    mixed = [(f"p{i}", "m1", "base", "first", "second") for i in range(3)]  # what the old runner paired
    make_store(None, mixed, sampling={"m1": t1, "base": t08}, store=store)
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    assert [r["model"] for r in board.rows] == ["m2", "base"]
    assert (board.meta["pairs"], board.meta["mixed_sampling_pairs"]) == (3, 3)
    assert "3 pairs of this judge whose two sides were sampled at different settings are left out" in \
        board.meta["notes"]
    only_mixed = make_store(tmp_path / "m.duckdb", mixed, sampling={"m1": t1, "base": t08})
    with pytest.raises(LeaderboardError, match=r"judge j@1's pairs on 'set' each compare samples drawn at two "
                                               r"settings: T=0.8, top_p 1, .* against T=1, top_p 1"):
        build_leaderboard(only_mixed.path, LeaderboardConfig(n_resamples=10))


def test_two_templates_of_one_judge_are_two_boards_picked_by_template(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")], judge="llm",
                       template="mt-bench@aaaa")
    make_store(None, [("p1", "m1", "base", "second", "first"), ("p2", "m1", "base", "second", "first")],
               judge="llm", template="pairwise@bbbb", store=store)
    code, _, err = _board(store)
    assert code == 2 and "choose one with --template: llm@1 [mt-bench@aaaa], llm@1 [pairwise@bbbb]" in err
    code, _, err = _board(store, "--judge", "llm")
    assert code == 2 and "judge 'llm' used 2 templates here; choose one with --template" in err
    code, out, err = _board(store, "--judge", "llm", "--template", "pairwise")
    assert code == 0, err
    board = json.loads(out)
    assert board["meta"]["template"] == "pairwise@bbbb" and board["meta"]["pairs"] == 2
    assert "[pairwise@bbbb]" in board["title"] and board["rows"][0]["template"] == "pairwise@bbbb"
    code, _, err = _board(store, "--template", "single")
    assert code == 2 and "no judgments with template 'single' (templates here: mt-bench@aaaa, pairwise@bbbb)" in err


def test_turns_are_picked_or_pooled_by_flag(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")])
    make_store(None, [("p1", "m1", "base", "second", "first"), ("p2", "m1", "base", "second", "first")], turn=2,
               store=store)
    code, _, err = _board(store)
    assert code == 2 and "span 2 turns: turn 1 (1 pairs), turn 2 (2 pairs); choose one with --turn N" in err
    for flag, pairs, turns in (("2", 2, "2"), ("all", 3, "1,2")):
        code, out, err = _board(store, "--turn", flag)
        assert code == 0, err
        assert (json.loads(out)["meta"]["pairs"], json.loads(out)["meta"]["turns"]) == (pairs, turns)
    assert _board(store, "--turn", "0")[2].strip() == "error: --turn must be a turn number (1, 2, …) or all, got '0'"


def test_held_out_metrics_of_one_evaluation_or_the_candidates(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")])
    add_metric(store, "m1", "perplexity", 7.0, dataset="synthetic@aa", settings={"max_length": 128,
                                                                              "max_prompt_length": 64})
    add_metric(store, "base", "perplexity", 9.0, dataset="synthetic@aa", settings={"max_length": 512,
                                                                                "max_prompt_length": 256})
    code, _, err = _board(store)
    assert code == 2 and "2 held-out evaluations: synthetic@aa at lengths 128/64 (1 models); synthetic@aa at " \
                         "lengths 512/256 (1 models); choose one with --held-out" in err
    code, out, err = _board(store, "--held-out", "synthetic@aa at lengths 128/64")
    assert code == 0, err
    board = json.loads(out)
    assert {r["model"]: r["perplexity"] for r in board["rows"]} == {"m1": 7.0, "base": None}
    assert (board["meta"]["held_out"], board["meta"]["max_length"], board["meta"]["max_prompt_length"]) == \
        ("synthetic@aa", 128, 64)


def test_the_reward_axis_is_the_boards_own_judge(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")], judge="rm")
    with store.transaction() as con:  # the oracle scored the same generations too, the opposite way
        for i, (gid, pid, ck) in enumerate(con.execute("SELECT generation_id, prompt_id, checkpoint FROM "
                                                       "generations").fetchall()):
            for judge_id, score in (("oracle", 1.0 if ck == "base" else 0.0), ("rm", 2.0 if ck == "m1" else 1.0)):
                con.execute("INSERT INTO scores VALUES (?, ?, '1', ?, ?, ?, now())",
                            [f"{judge_id}{i}", judge_id, gid, pid, score])
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    with read_store(store.path) as con:
        points, name = reward_points(con, board.rows, board.meta)
    assert name == "mean score (rm)" and {p["model"]: p["reward"] for p in points} == {"m1": 2.0, "base": 1.0}
