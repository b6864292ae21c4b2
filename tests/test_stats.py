"""The one bootstrap (evalharness.stats): its draws, its intervals, and that metrics, leaderboards and diagnostics
take their CIs from it."""

import math

import numpy as np
import pytest

from evalharness import metrics as M
from evalharness import stats as S
from evalharness.diagnose import common as D
from leaderboards import stats as L


def test_counts_are_the_indices_counted_and_each_row_sums_to_n():
    # n = 3, 2 resamples: a row of indices (2, 0, 2) is the count row (1, 0, 2)
    idx = np.concatenate(list(S.resample_indices(3, 2, seed=4)))
    counts = np.concatenate(list(S.resample_counts(3, 2, seed=4)))
    assert idx.shape == counts.shape == (2, 3)
    for row, c in zip(idx, counts):
        assert c.tolist() == np.bincount(row, minlength=3).tolist() and c.sum() == 3


def test_the_draws_are_the_ones_each_callers_figures_were_made_with():
    n, b = 9, 150
    one_generator = np.random.default_rng(5).integers(0, n, size=(b, n))  # metrics (b·n under CELLS), diagnostics
    assert np.array_equal(np.concatenate(list(S.resample_indices(n, b, 5))), one_generator)
    assert np.array_equal(np.concatenate(list(S.resample_indices(n, b, 5, chunk=b))), one_generator)
    per_chunk = np.concatenate([np.random.default_rng([5, i]).integers(0, n, size=(rows, n))
                                for i, rows in enumerate((64, 64, 22))])  # leaderboards: 64 rows per seeded chunk
    assert np.array_equal(np.concatenate(list(S.resample_indices(n, b, 5, chunk=64, seed_per_chunk=True))), per_chunk)
    board = np.concatenate(list(L.resample_counts(n, b, 5)))
    assert np.array_equal(board, np.stack([np.bincount(r, minlength=n) for r in per_chunk]))


def test_percentile_interval_by_hand_ignoring_nan():
    # 5 draws 1..5 at level 0.5: the 25th and 75th percentiles interpolate to 2 and 4; NaN draws are left out
    lo, hi = S.percentile_ci(np.array([3.0, np.nan, 1.0, 5.0, 2.0, 4.0]), level=0.5)
    assert (lo, hi) == (2.0, 4.0)
    lo, hi = S.percentile_ci(np.array([[1.0, np.nan], [3.0, np.nan]]), level=0.5)  # per column; all-NaN gives NaN
    assert lo[0] == 1.5 and hi[0] == 2.5 and math.isnan(lo[1]) and math.isnan(hi[1])
    assert all(math.isnan(x) for x in S.percentile_ci(np.empty(0)))


def test_mean_ci_of_a_constant_is_the_constant_and_needs_values():
    assert S.mean_ci([2.5] * 7, resamples=50) == (2.5, 2.5, 2.5)
    mean, lo, hi = S.mean_ci([1.0, 2.0], resamples=0)
    assert mean == 1.5 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="no values"):
        S.mean_ci([])


VALUES = np.random.default_rng(0).lognormal(size=40)


def test_metrics_take_their_ci_from_the_shared_bootstrap():
    est = M.mean_estimate(VALUES, resamples=300, seed=3)
    assert (est.value, est.ci_low, est.ci_high) == S.mean_ci(VALUES, resamples=300, seed=3)


def test_diagnostics_take_their_ci_from_the_shared_bootstrap():
    got = D.mean_ci(list(VALUES) + [None, math.nan], resamples=300, seed=3)  # non-finite values are left out
    assert (got["mean"], got["ci_low"], got["ci_high"]) == S.mean_ci(VALUES, resamples=300, seed=3, chunk=300)
    assert got["n"] == 40


def test_leaderboards_take_their_ci_from_the_shared_bootstrap():
    # model 0 against the baseline 1, one pair per prompt: a resample's win rate is counts @ y / counts @ 1
    p = 30
    verdict = np.random.default_rng(1).choice([-1, 0, 1], size=p)
    nan = np.full(p, np.nan)
    board = L.board_stats(np.zeros(p), np.ones(p), np.arange(p), verdict, nan, np.ones(p), np.ones(p), 2, p,
                          baseline=1, n_resamples=200, seed=7)
    y = (verdict + 1) / 2
    rates = np.concatenate([w @ y / w.sum(1) for w in S.resample_counts(p, 200, 7, chunk=64, seed_per_chunk=True)])
    lo, hi = S.percentile_ci(rates)
    assert (board.ci_low[0], board.ci_high[0]) == (lo, hi)
