"""Bradley-Terry ratings the data cannot pin down are flagged in the row, the notes and the terminal cell."""

import json

import numpy as np
from lbstore import make_store

from leaderboards import stats
from leaderboards.board import BT_WIDE_CI, PERFECT, WIDE, LeaderboardConfig, build_leaderboard, leaderboard_table
from leaderboards.render import render


def _store(path):
    # winner beats base on all 40 prompts; even wins 20 and loses 20; few wins 2 of 3.
    pairs = [(f"p{i}", "winner", "base", "first", None) for i in range(40)]
    pairs += [(f"p{i}", "even", "base", "first" if i % 2 else "second", None) for i in range(40)]
    pairs += [(f"p{i}", "few", "base", "second" if i == 0 else "first", None) for i in range(3)]
    return make_store(path, pairs)


def test_perfect_record_and_wide_ci_are_flagged(tmp_path):
    board = build_leaderboard(_store(tmp_path / "s.duckdb").path, LeaderboardConfig(n_resamples=200))
    rows = {r["model"]: r for r in board.rows}
    assert rows["winner"]["bt_flag"].split("; ")[0] == PERFECT
    assert rows["even"]["bt_flag"] is None and rows["even"]["bt_ci_high"] - rows["even"]["bt_ci_low"] < BT_WIDE_CI
    # 2 of 3: a resample of three wins has no finite rating, so the interval spans thousands of points.
    assert rows["few"]["bt_flag"] == WIDE and rows["few"]["bt_ci_high"] - rows["few"]["bt_ci_low"] > BT_WIDE_CI
    notes = " ".join(board.meta["notes"])
    assert f"BT {PERFECT}: the model won (or lost) every game" in notes and f"BT {WIDE}: the 95% CI spans" in notes
    table = leaderboard_table(board)
    assert f"({PERFECT}" in render(table, "table")
    assert {r["model"]: r["bt_flag"] for r in json.loads(render(table, "json"))["rows"]}["even"] is None


def test_no_flag_note_when_no_rating_is_flagged(tmp_path):
    pairs = [(f"p{i}", "m", "base", "first" if i % 2 else "second", None) for i in range(40)]
    board = build_leaderboard(make_store(tmp_path / "s.duckdb", pairs).path, LeaderboardConfig(n_resamples=50))
    assert not any(n.startswith("BT ") and "perfect" in n for n in board.meta["notes"])
    assert {r["bt_flag"] for r in board.rows} == {None}


def test_a_model_that_lost_every_game_is_a_perfect_record_too():
    # model 0 lost all three games to model 1; model 2 split two games with model 1.
    a, b = np.array([0, 0, 0, 2, 2]), np.array([1, 1, 1, 1, 1])
    verdict = np.array([-1, -1, -1, 1, -1])
    s = stats.board_stats(a, b, np.arange(5), verdict, np.full(5, np.nan), np.ones(5), np.ones(5), 3, 5,
                          baseline=1, n_resamples=0)
    assert s.bt_perfect.tolist() == [True, False, False]
