"""A board of some models only (an experiment's own, in a store other experiments share): the other models' pairs
are not on it, not in its counts, and not what its claims read."""

import pytest
from lbstore import make_store

from evalharness import claim_eval as E
from leaderboards.board import LeaderboardConfig, build_leaderboard
from leaderboards.claims import Claim

PROMPTS = [f"p{i:02d}" for i in range(10)]
WIN, LOSS = ("first", "second"), ("second", "first")


@pytest.fixture
def shared(tmp_path):
    # this experiment: a wins 8 of 10 against base; another experiment in the same store: c loses every prompt
    pairs = [(p, "a", "base", *(WIN if i < 8 else LOSS)) for i, p in enumerate(PROMPTS)]
    pairs += [(p, "c", "base", *LOSS) for p in PROMPTS]
    return make_store(tmp_path / "s.duckdb", pairs, judge="oracle")


def test_a_board_of_some_models_leaves_the_others_pairs_out(shared):
    whole = build_leaderboard(shared.path, LeaderboardConfig(n_resamples=20, baseline="base"))
    own = build_leaderboard(shared.path, LeaderboardConfig(n_resamples=20, baseline="base", models=("a", "base")))
    assert {r["model"] for r in whole.rows} == {"a", "c", "base"} and "models" not in whole.meta
    assert {r["model"] for r in own.rows} == {"a", "base"}
    assert own.meta["models"] == ["a", "base"] and own.meta["pairs"] == 10 and own.meta["orders"] == 20
    assert whole.meta["pairs"] == 20
    [a] = [r for r in own.rows if r["model"] == "a"]
    assert a["win_rate"] == pytest.approx(80.0)


def test_claims_on_such_a_board_read_its_models_alone(shared):
    own = build_leaderboard(shared.path, LeaderboardConfig(n_resamples=20, baseline="base", models=("a", "base")))
    [v] = E.evaluate_on_board(shared.path, own.meta, [Claim("c wins more", "win_rate", "c", "a", "higher")],
                              resamples=50)
    assert v.verdict == "inconclusive" and v.note == "no configuration named 'c' on this board"


def test_leaderboard_models_flag_picks_them_by_name_and_lists_candidates_for_an_unknown_one(shared):
    from typer.testing import CliRunner

    from evalharness.cli import app

    def board(*extra):
        return CliRunner().invoke(app, ["leaderboard", "--store", shared.path, "--baseline", "base", "--bootstrap",
                                        "20", "--format", "json", *extra])

    import json

    done = board("--models", "a,base")
    assert done.exit_code == 0, done.output
    meta = json.loads(done.stdout)
    assert meta["meta"]["models"] == ["a", "base"] and meta["meta"]["pairs"] == 10
    bad = board("--models", "a,bsae")
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: no model 'bsae'") and "'base'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    one = board("--models", "a")
    assert one.exit_code == 2 and "a board compares at least two" in one.stderr
    assert board("--models", "a,,base").exit_code == 2
