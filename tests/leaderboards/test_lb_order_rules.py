"""Order rules (agree, fastchat, alpacaeval) and the tie policies, each named on the board with its formula."""

import json

import numpy as np
import pytest
from lbstore import make_store
from typer.testing import CliRunner

from evalharness.cli import app
from leaderboards import stats
from leaderboards.board import TEXT_FIELDS, LeaderboardConfig, build_leaderboard, leaderboard_table
from leaderboards.query import LeaderboardError
from leaderboards.render import read_csv, render

# m1 vs base; (shown m1 first, shown base first), as stored in positions:
#   p1 first, second  -> both prefer m1
#   p2 first, first   -> the orders disagree
#   p3 first, unparsed -> one valid order, for m1
#   p4 tie, second    -> a tie and an order for m1 (mean preference 0.75)
#   p5 second, first  -> both prefer base
SPEC = [("p1", "m1", "base", "first", "second"), ("p2", "m1", "base", "first", "first"),
        ("p3", "m1", "base", "first", "unparsed"), ("p4", "m1", "base", "tie", "second"),
        ("p5", "m1", "base", "second", "first")]


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s.duckdb", SPEC)


def _m1(board):
    return next(r for r in board.rows if r["model"] == "m1")


@pytest.mark.parametrize("rule, counts, rate, dropped", [
    # agree: +1, tie, +1 (the single valid order), tie, -1 -> (2 + 2/2)/5 = 60%
    ("agree", (2, 2, 1, 5), 60.0, 0),
    # fastchat: p3 dropped for its unparsed order -> +1, tie, tie, -1 -> (1 + 2/2)/4 = 50%
    ("fastchat", (1, 2, 1, 4), 50.0, 1),
    # alpacaeval: outcomes 1, 0.5, 1, 0.75, 0 -> 3.25/5 = 65%; p4 leans to m1, so W/T/L = 3/1/1
    ("alpacaeval", (3, 1, 1, 5), 65.0, 0),
])
def test_each_order_rule_by_hand_and_named_on_the_board(store, rule, counts, rate, dropped):
    board = build_leaderboard(store.path, LeaderboardConfig(ties="tie", n_resamples=10, order_rule=rule))
    m1 = _m1(board)
    assert (m1["wins"], m1["ties"], m1["losses"], m1["n"]) == counts
    assert m1["win_rate"] == pytest.approx(rate)
    assert board.meta["order_rule"] == rule and board.meta["dropped_pairs"] == dropped
    assert f"order rule {rule}" in board.meta["notes"][0]
    table = leaderboard_table(board)
    assert json.loads(render(table, "json"))["meta"]["order_rule"] == rule
    assert {r["order_rule"] for r in read_csv(render(table, "csv"), TEXT_FIELDS)} == {rule}


def test_the_default_rule_is_the_one_boards_used_before(store):
    assert _m1(build_leaderboard(store.path, LeaderboardConfig(n_resamples=10)))["win_rate"] == pytest.approx(60.0)


def test_numpy_rules_agree_with_the_hand_counts():
    # The same five pairs as orders: A's score per order, NaN for the unparsed one.
    pair = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    score = np.array([1, 1, 1, 0, 1, np.nan, 0.5, 1, 0, 0])
    expected = {"agree": [1, 0, 1, 0, -1], "fastchat": [1, 0, 0, 0, -1], "alpacaeval": [1, 0, 1, 1, -1]}
    for rule, verdicts in expected.items():
        c = stats.combine_orders(pair, score, rule=rule)
        assert c.verdict.tolist() == verdicts
        assert c.usable.tolist() == [True, True, rule != "fastchat", True, True]
    assert stats.combine_orders(pair, score, rule="alpacaeval").score.tolist() == [1.0, 0.5, 1.0, 0.75, 0.0]


@pytest.mark.parametrize("ties, formula, rate", [
    ("tie", "win rate = (wins + ties/2)/n", 60.0),
    ("exclude", "win rate = wins/(wins + losses); tied pairs are left out of n", 2 / 3 * 100),
    # average, no probabilities: each order counts 1 / 0.5 / 0, averaged per pair: 1, .5, 1, .75, 0 -> 65%
    ("average", "win rate = mean over pairs of P(model preferred), averaged over the pair's valid orders", 65.0),
])
def test_every_tie_policy_states_its_own_formula(store, ties, formula, rate):
    board = build_leaderboard(store.path, LeaderboardConfig(ties=ties, n_resamples=10))
    note = board.meta["notes"][1]
    assert note.startswith(f"ties: {ties};") and formula in note
    if ties != "tie":
        assert "(wins + ties/2)/n" not in note
    assert _m1(board)["win_rate"] == pytest.approx(rate)
    assert _m1(board)["tie_policy"] == ties


def test_the_alpacaeval_rule_names_its_mean_in_the_formula(store):
    board = build_leaderboard(store.path, LeaderboardConfig(ties="tie", n_resamples=10, order_rule="alpacaeval"))
    assert "win rate = the mean of the per-pair outcomes" in board.meta["notes"][1]


def test_cli_order_rule_flag_and_a_bad_rule(store):
    runner = CliRunner()
    ok = runner.invoke(app, ["leaderboard", "--store", store.path, "--order-rule", "fastchat", "--bootstrap", "5"])
    assert ok.exit_code == 0, ok.output
    assert "order_rule: fastchat" in ok.stdout and "order rule fastchat" in ok.stdout
    bad = runner.invoke(app, ["leaderboard", "--store", store.path, "--order-rule", "strict"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: --order-rule must be one of agree, fastchat, alpacaeval, got 'strict'"
    with pytest.raises(LeaderboardError, match="--lc must be one of"):
        LeaderboardConfig(lc="v2")
