"""Arena-Hard's five verdict levels: the parser, and Bradley-Terry with a strong verdict counting three games."""

from __future__ import annotations

import math

import numpy as np
import pytest

from judges.parsers import PARSERS, STRENGTH, arena_hard_verdict
from leaderboards.stats import arena_hard_games, board_stats


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
