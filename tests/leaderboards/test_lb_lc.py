"""AlpacaEval's length-controlled win rate (length_controlled_v1): the fit, what it removes, where it is withheld,
and the instruction-difficulty file."""

import numpy as np
import pytest
from lbstore import make_store

from evalharness.config import ConfigError
from leaderboards import lc
from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
from leaderboards.query import LeaderboardError
from leaderboards.render import render


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_l1_fit_reaches_the_minimum_a_general_optimiser_finds():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(3)
    X = np.column_stack([np.tanh(rng.normal(size=300)), rng.normal(size=300), np.ones(300)])
    y = _sigmoid(X @ np.array([1.2, -0.7, 0.3]) + rng.normal(scale=0.5, size=300))  # soft labels
    sw = np.where(np.arange(300) < 200, 1.0, 0.1)
    for c in (0.01, 0.3, 100.0):
        w = lc.fit_l1_logistic(X, y, sw, c)

        def objective(uv, c=c):  # w = u - v with u, v >= 0 makes |w|_1 smooth: sum(u + v)
            return c * lc._loss(X, y, sw, uv[:3] - uv[3:]) + uv.sum()

        ref = optimize.minimize(objective, np.zeros(6), method="L-BFGS-B", bounds=[(0, None)] * 6,
                                options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 10000})
        assert objective(np.concatenate([np.maximum(w, 0), np.maximum(-w, 0)])) <= ref.fun + 1e-7
        assert w == pytest.approx(ref.x[:3] - ref.x[3:], abs=1e-3)


def test_lc_removes_a_pure_length_effect():
    # The model is as good as the baseline (P = 1/2 at equal length) but the judge likes length and the model is
    # longer 77% of the time: raw ~ 0.63, the LC lands back at ~ 0.5.
    rng = np.random.default_rng(0)
    n = 800
    delta = rng.normal(150, 200, n)
    y = (rng.random(n) < _sigmoid(1.5 * np.tanh(delta / delta.std(ddof=1)))).astype(float)
    result = lc.length_controlled_v1(np.zeros(n, int), np.arange(n), y, 500 + delta, np.full(n, 500.0),
                                     np.zeros(n), 2, np.array([y.mean(), np.nan]))
    assert y.mean() > 0.6 and result.rate[0] == pytest.approx(0.5, abs=0.03) and result.note[0] is None


def test_lc_equals_the_raw_rate_when_lengths_are_equal():
    # No length difference: the fitted model term and difficulty weight reproduce the mean outcome (the score
    # equation of the model term), so the prediction averaged over instructions is the raw rate.
    rng = np.random.default_rng(1)
    n = 400
    d = rng.normal(size=n)
    y = _sigmoid(0.3 + d)
    result = lc.length_controlled_v1(np.zeros(n, int), np.arange(n), y, np.full(n, 5.0), np.full(n, 5.0), d, 1,
                                     np.array([y.mean()]))
    assert result.rate[0] == pytest.approx(y.mean(), abs=1e-3)


def _one_sided_with_gamed_baselines(n=800, seed=1):
    """Model 0 (true P = sigmoid(0.5) at equal length) is longer than the baseline on every instruction; models 1 and
    2 are the baseline made verbose and concise (true P = 1/2), lengths on both sides."""
    rng = np.random.default_rng(seed)
    deltas = [rng.normal(400, 100, n), rng.normal(300, 150, n), rng.normal(-300, 150, n)]
    quality = [0.5, 0.0, 0.0]
    ys = [(rng.random(n) < _sigmoid(q + 1.5 * np.tanh(dl / dl.std(ddof=1)))).astype(float)
          for q, dl in zip(quality, deltas)]
    model = np.repeat([0, 1, 2], n)
    delta, y = np.concatenate(deltas), np.concatenate(ys)
    raw = np.array([v.mean() for v in ys] + [np.nan])
    return model, np.tile(np.arange(n), 3), y, 1000 + delta, np.full(3 * n, 1000.0), np.zeros(n), raw


def test_one_sided_lengths_are_withheld_unless_gamed_baselines_anchor_the_length_weight():
    model, prompt, y, own, base, d, raw = _one_sided_with_gamed_baselines()
    alone = lc.length_controlled_v1(model, prompt, y, own, base, d, 4, raw)
    assert np.isnan(alone.rate[0]) and alone.note[0] == lc.ONE_SIDED_LENGTHS
    regularised = lc.length_controlled_v1(model, prompt, y, own, base, d, 4, raw, gamed=[1, 2])
    assert raw[0] > 0.85 and regularised.rate[0] == pytest.approx(_sigmoid(0.5), abs=0.03)


def test_too_few_pairs_and_no_difficulty_are_withheld():
    n = lc.MIN_PAIRS - 1
    few = lc.length_controlled_v1(np.zeros(n, int), np.arange(n), np.full(n, 0.5), np.arange(n) * 1.0,
                                  np.full(n, 3.0), np.zeros(n), 2, np.array([0.5, np.nan]))
    assert np.isnan(few.rate[0]) and few.note == [lc.TOO_FEW, None]
    none = lc.length_controlled_v1(np.zeros(n, int), np.arange(n), np.full(n, 0.5), np.arange(n) * 1.0,
                                   np.full(n, 3.0), None, 2, np.array([0.5, np.nan]))
    assert none.note == [lc.NO_DIFFICULTY, None]


# ------------------------------------------------------------------------------------------------ on the board

N_PROMPTS = 60


def _lc_store(path, models=("m1", "m2", "m3"), seed=0):
    """Each model against base on prompts "1".."60" (numbered like AlpacaEval's positions), single orders, answer
    lengths drawn so both signs of the length difference occur."""
    rng = np.random.default_rng(seed)
    pairs, texts = [], {}
    for i in range(1, N_PROMPTS + 1):
        pid = str(i)
        texts[("base", pid)] = "b" * 100
        for m in models:
            texts[(m, pid)] = "x" * int(rng.integers(40, 200))
            pairs.append((pid, m, "base", str(rng.choice(["first", "second", "tie"], p=[0.5, 0.4, 0.1])), None))
    return make_store(path, pairs, texts=texts)


def _row(board, model):
    return next(r for r in board.rows if r["model"] == model)


def test_board_fits_difficulty_jointly_from_three_models(tmp_path):
    store = _lc_store(tmp_path / "s.duckdb")
    board = build_leaderboard(store.path, LeaderboardConfig(baseline="base", n_resamples=10))
    for m in ("m1", "m2", "m3"):
        row = _row(board, m)
        assert row["lc_win_rate"] is not None and 0 < row["lc_win_rate"] < 100 and row["lc_method"] == "alpacaeval-v1"
        assert row["lc_win_rate_se"] is None
    lc_note = next(n for n in board.meta["notes"] if n.startswith("LC (alpacaeval-v1)"))
    assert "difficulty fitted from the 3 rated models' outcomes" in lc_note
    assert "not regularised toward the baseline (no base_verbose / base_concise in the store)" in lc_note
    assert board.meta["lc_method"] == "alpacaeval-v1"


def test_one_model_without_a_difficulty_file_says_so_in_the_cell(tmp_path):
    store = _lc_store(tmp_path / "s.duckdb", models=("m1",))
    board = build_leaderboard(store.path, LeaderboardConfig(baseline="base", n_resamples=10))
    assert _row(board, "m1")["lc_win_rate"] is None and _row(board, "m1")["lc_note"] == lc.NO_DIFFICULTY
    text = render(leaderboard_table(board), "table")
    assert "n/a: no difficulty" in text and "give --instruction-difficulty" in text
    pooled = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))  # base is then found as baseline
    assert _row(pooled, "m1")["lc_note"] == lc.NO_DIFFICULTY


def test_pooled_boards_have_no_alpacaeval_lc(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "a", "b", "first", None), ("p2", "b", "a", "first", None)])
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    assert {r["lc_note"] for r in board.rows} == {lc.NO_BASELINE}


@pytest.mark.parametrize("header, key", [(",instruction_difficulty", lambda i: i - 1),  # AlpacaEval's own layout
                                         ("instruction,instruction_difficulty", lambda i: f"question {i}")])
def test_difficulty_file_by_position_or_by_instruction(tmp_path, header, key):
    store = _lc_store(tmp_path / "s.duckdb", models=("m1",))
    rng = np.random.default_rng(5)
    path = tmp_path / "difficulty.csv"
    path.write_text("\n".join([header] + [f"{key(i)},{rng.normal():.4f}" for i in range(1, N_PROMPTS + 1)]) + "\n")
    board = build_leaderboard(store.path, LeaderboardConfig(baseline="base", n_resamples=10,
                                                            instruction_difficulty=str(path)))
    row = _row(board, "m1")
    assert row["lc_win_rate"] is not None and row["lc_note"] in (None, lc.FAR_FROM_RAW)
    assert f"difficulty from the file ({N_PROMPTS} of {N_PROMPTS} prompts)" in board.meta["notes"][3]


def test_bad_difficulty_files_are_one_line_errors(tmp_path):
    store = _lc_store(tmp_path / "s.duckdb", models=("m1",))
    bad = tmp_path / "bad.csv"
    bad.write_text("index,instruction_difficulty\n0,0.5\n1,hard\n")
    with pytest.raises(ConfigError, match=r"bad.csv:3 field 'instruction_difficulty': not a number: 'hard'"):
        build_leaderboard(store.path, LeaderboardConfig(baseline="base", instruction_difficulty=str(bad)))
    other = tmp_path / "other.csv"
    other.write_text("instruction,instruction_difficulty\nnot a prompt here,0.5\n")
    with pytest.raises(LeaderboardError, match="none of its 1 rows matches one of the board's 60 prompts"):
        build_leaderboard(store.path, LeaderboardConfig(baseline="base", instruction_difficulty=str(other)))
    with pytest.raises(LeaderboardError, match="used only by --lc alpacaeval-v1"):
        LeaderboardConfig(lc="tanh-length", instruction_difficulty=str(other))


def test_the_simpler_fit_is_still_there_and_named_as_not_alpacaevals(tmp_path):
    store = _lc_store(tmp_path / "s.duckdb", models=("m1",))
    board = build_leaderboard(store.path, LeaderboardConfig(baseline="base", n_resamples=10, lc="tanh-length"))
    assert _row(board, "m1")["lc_win_rate"] is not None and _row(board, "m1")["lc_method"] == "tanh-length"
    assert any(n.startswith("LC (tanh-length, not AlpacaEval's)") for n in board.meta["notes"])
