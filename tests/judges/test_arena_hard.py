"""Arena-Hard's five verdict levels: the parser, and Bradley-Terry with a strong verdict counting three games."""

from __future__ import annotations

import math

import numpy as np
import pytest

from judges.parsers import PARSERS, STRENGTH, arena_hard_verdict
from leaderboards.stats import arena_hard_games, board_stats
from tests.judges.loopback import loopback_fixture  # noqa: F401


@pytest.mark.parametrize("text,expected", [
    ("My final verdict is: Assistant A is significantly better: [[A>>B]]", ("first", True)),
    ("My final verdict is [[A>B]].", ("first", False)),
    ("My final verdict is tie: [[A=B]]", ("tie", False)),
    ("[[B>A]]", ("second", False)),
    ("Assistant B is significantly better: [[B>>A]]", ("second", True)),
    ("[[b>>a]]", ("second", True)),  # arena-hard-auto reads labels upper-cased
    ("[[B<<A]]", ("first", True)),  # the same level written from B's side
    ("Better: [A>B]", ("first", False)),  # single brackets when there are no double ones
    ("[A>B] but in the end [[B>A]]", ("second", False)),  # double brackets win over single ones
    ("[[A>B]] ... [[A>>B]]", ("unparsed", False)),  # two levels: not a guess between them
    ("[[A>B]] [[A>B]]", ("first", False)),  # repeated, not contradictory
    ("A is better.", ("unparsed", False)),
    ("[[C]]", ("unparsed", False)),
])
def test_the_five_levels_and_their_strength(text, expected):
    assert arena_hard_verdict(text) == expected
    assert PARSERS["arena-hard"](text) == expected[0] and STRENGTH["arena-hard"](text) == expected[1]


def test_bt_counts_a_strong_verdict_as_three_games():
    # Model 0 against the baseline, model 1, on two prompts; orders: prompt 0 [[A>>B]] then [[A>B]] for model 0,
    # prompt 1 [[B>A]] twice (model 1 better both times).
    # Arena-Hard's games: prompt 0: 3 + 1 = 4 won by model 0; prompt 1: 2 lost. P(0 beats 1) = 4/6 = 2/3, so
    # theta_0 - theta_1 = ln((2/3) / (1/3)) = ln 2 and the rating is 1000 + 400 log10(2) = 1120.41.
    # One game per pair (the default): one win, one loss -> 1000.
    a, b, prompt = np.array([0, 0]), np.array([1, 1]), np.array([0, 1])
    verdict, p_a = np.array([1, -1]), np.full(2, np.nan)
    length = np.full(2, 10.0)
    wins, games = arena_hard_games(np.array([2, 2]), np.array([2.0, 0.0]), np.array([1, 0]), np.array([0, 0]))
    assert wins.tolist() == [4.0, 0.0] and games.tolist() == [4.0, 2.0]
    weighted = board_stats(a, b, prompt, verdict, p_a, length, length, 2, 2, baseline=1, n_resamples=0,
                           bt_games=(wins, games))
    plain = board_stats(a, b, prompt, verdict, p_a, length, length, 2, 2, baseline=1, n_resamples=0)
    assert weighted.bt[0] == pytest.approx(1000 + 400 * math.log10(2), abs=1e-3)
    assert weighted.bt[1] == pytest.approx(1000.0)
    assert plain.bt[0] == pytest.approx(1000.0, abs=1e-3)
    assert weighted.win_rate[0] == plain.win_rate[0] == 0.5  # the win rate is per pair either way


def test_a_tied_order_is_a_game_half_won():
    # One pair, orders [[A=B]] and [[A>B]]: 2 games, 1.5 won -> P = 3/4, theta diff ln 3, +190.85 points.
    wins, games = arena_hard_games(np.array([2]), np.array([1.5]), np.array([0]), np.array([0]))
    s = board_stats(np.array([0]), np.array([1]), np.array([0]), np.array([0]), np.full(1, np.nan),
                    np.ones(1), np.ones(1), 2, 1, baseline=1, n_resamples=0, bt_games=(wins, games))
    assert s.bt[0] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-3)


def test_strong_verdicts_are_stored_and_weighted_on_the_board(tmp_path, loopback):
    """The llm judge with the arena-hard template: a strong verdict is stored as strong, and the board's
    --bt-games arena-hard counts it three times. Model "long" wins p1 strongly in both orders and loses p2, p3 and p4
    slightly."""
    import json

    from typer.testing import CliRunner

    from evalharness.cli import app
    from evalharness.judging import JudgeConfig, judge
    from tests.judges.loopback import completion, shown_responses
    from tests.test_judging import seed_store

    store = seed_store(tmp_path / "s.duckdb", {"long": ["a much longer answer here", "b", "c", "d"],
                                               "short": ["tiny", "bb", "cc", "dd"]})

    def levels(req):
        first, second = shown_responses(req.prompt)
        if "longer" in first + second:
            return completion("[[A>>B]]" if "longer" in first else "[[B>>A]]")
        return completion("[[B>A]]" if len(second) > len(first) else "[[A>B]]")

    loopback.behaviour = levels
    spec = f"llm:model=loop,base_url={loopback.url},template=arena-hard,max_retries=0"
    judge(JudgeConfig(spec, ["long"], baseline="short", prompts="set"), store, progress=False)
    with store.connect() as con:
        strong = con.execute("SELECT prompt_id, bool_and(strong) FROM judgments GROUP BY 1 ORDER BY 1").fetchall()
    assert strong == [("p1", True), ("p2", False), ("p3", False), ("p4", False)]

    def bt(*flags):
        out = CliRunner().invoke(app, ["leaderboard", "--store", str(store.path), "--format", "json",
                                       "--bootstrap", "0", *flags], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return next(r["bt"] for r in json.loads(out.output)["rows"] if r["label"] == "long")

    # Per pair: long wins p1 and loses p2..p4: 1 of 4 -> 1000 + 400 log10(1/3). Arena-Hard: p1 is 2 x 3 games won,
    # the rest 6 single games lost: 6 of 12 -> 1000.
    assert bt() == pytest.approx(1000 + 400 * math.log10(1 / 3), abs=0.5)
    assert bt("--bt-games", "arena-hard") == pytest.approx(1000.0, abs=0.5)
