"""Seeds x prompts statistics (evalharness.stats): the two-level bootstrap's coverage, paired p-values under the null,
Holm's correction by hand and the minimum detectable effect against its closed form."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from evalharness import stats as S

# Synthetic replicates X[s, p] = mu + a_s + b_p + e_sp with a seed effect, a prompt effect (shared by every seed) and
# seed x prompt noise, in proportions like those of per-prompt gold rewards of a few seeds.
SEEDS, PROMPTS, SD_SEED, SD_PROMPT, SD_CELL = 8, 60, 0.1, 0.5, 0.5


def _replicates(rng, mu=0.0, seeds=SEEDS):
    return (mu + SD_SEED * rng.standard_normal((seeds, 1)) + SD_PROMPT * rng.standard_normal((1, PROMPTS))
            + SD_CELL * rng.standard_normal((seeds, PROMPTS)))


def test_two_level_interval_covers_the_true_mean_about_95_percent_of_the_time():
    # N = 400 simulations: a true 95% coverage gives a hit rate of SE sqrt(.95 * .05 / 400) = 0.0109; the band is
    # 3.5 SE (0.038) wide on each side, so a correct interval fails this with probability < 0.05%, while one that
    # ignores the seeds (below) falls far outside it.
    rng, n, mu = np.random.default_rng(1), 400, 0.3
    hits = ignoring_seeds = 0
    for i in range(n):
        x = _replicates(rng, mu)
        _, lo, hi = S.two_level_mean(x, resamples=400, seed=i)
        hits += lo <= mu <= hi
        _, lo, hi = S.mean_ci(x.ravel(), resamples=400, seed=i)  # every cell an independent unit: too narrow
        ignoring_seeds += lo <= mu <= hi
    assert abs(hits / n - 0.95) <= 3.5 * math.sqrt(0.95 * 0.05 / n)
    assert ignoring_seeds / n < 0.80


def test_two_level_interval_at_a_boards_size_three_seeds_64_prompts():
    # The board combines three seeds over 64 prompts. With a seed effect small beside the prompt and cell noise (as
    # above), the interval still covers ~95%: N = 300, SE 0.0126, band 3.5 SE = 0.044 each side; a nested scheme
    # (seeds drawn, then prompts drawn afresh within each seed) shrinks the shared prompt effect and falls below it.
    # (Where seeds disagree more, 2 degrees of freedom make it narrower, as the module says: SD_SEED 0.3 covers ~86%.)
    rng, n, mu = np.random.default_rng(1), 300, 0.3
    hits = 0
    for i in range(n):
        x = (mu + SD_SEED * rng.standard_normal((3, 1)) + SD_PROMPT * rng.standard_normal((1, 64))
             + SD_CELL * rng.standard_normal((3, 64)))
        _, lo, hi = S.two_level_mean(x, resamples=400, seed=i)
        hits += lo <= mu <= hi
    assert abs(hits / n - 0.95) <= 3.5 * math.sqrt(0.95 * 0.05 / n)


def test_two_level_mean_leaves_out_unmeasured_cells_and_one_row_is_one_seed():
    x = np.array([[1.0, np.nan, 3.0], [5.0, 7.0, np.nan]])
    mean, lo, hi = S.two_level_mean(x, resamples=200)
    assert mean == 4.0 and 1.0 <= lo <= hi <= 7.0
    assert S.two_level_mean([2.0, 2.0, 2.0], resamples=50) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one measured cell"):
        S.two_level_mean([[np.nan]])


def test_paired_p_values_are_uniform_under_the_null():
    # A and B share seeds and prompts and differ by nothing but noise. 300 p-values against U(0, 1) by
    # Kolmogorov-Smirnov: the RNG is seeded, so this is one fixed draw; a correct test's KS p is itself uniform, and
    # 0.01 is the level at which we call it not uniform (the draws' 1/301 granularity moves KS's D by < 0.004).
    rng, n = np.random.default_rng(7), 300
    ps = []
    for i in range(n):
        base = _replicates(rng)
        a = base + 0.3 * rng.standard_normal(base.shape)
        b = base + 0.3 * rng.standard_normal(base.shape)
        ps.append(S.paired_difference(a, b, resamples=300, seed=i).p_value)
    assert sps.kstest(ps, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(np.array(ps) <= 0.05) <= 0.09  # about 5% rejections at alpha 0.05 (SE 0.0126)


def test_a_planted_difference_is_found_paired_and_unpaired():
    rng = np.random.default_rng(3)
    base = _replicates(rng)
    a = base + 0.25 + 0.1 * rng.standard_normal(base.shape)
    d = S.paired_difference(a, base, resamples=500)
    assert d.ci_low > 0 and d.p_value < 0.01 and d.ci_low <= d.estimate <= d.ci_high
    assert d.prompts == PROMPTS and d.seeds == (SEEDS, SEEDS) and d.paired_seeds
    # other seeds for B: only the prompt effect pairs, so the interval is wider than the paired one
    u = S.paired_difference(a, _replicates(rng), paired_seeds=False, resamples=500)
    assert u.ci_high - u.ci_low > d.ci_high - d.ci_low and not u.paired_seeds
    with pytest.raises(ValueError, match="same prompts"):
        S.paired_difference(a, base[:, :5])
    with pytest.raises(ValueError, match="as many seeds"):
        S.paired_difference(a, base[:3])


def test_bootstrap_p_by_hand():
    # 9 draws, 2 of them <= 0: (1 + 2) / 10 on that side, 2 x 0.3 = 0.6; all on one side: 2 x 1/10
    assert S.bootstrap_p(np.array([-1.0, 0.0, 1, 2, 3, 4, 5, 6, 7])) == pytest.approx(0.6)
    assert S.bootstrap_p(np.arange(1.0, 10.0)) == pytest.approx(0.2)
    assert S.bootstrap_p(np.zeros(5)) == 1.0 and math.isnan(S.bootstrap_p(np.empty(0)))


def test_holm_step_down_by_hand():
    # p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005, 0.01, 0.03, 0.04.
    #   0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> running max 0.06
    # so, in the input order: 0.03, 0.06, 0.06, 0.02 (at alpha 0.05 only the first and last are rejected).
    assert S.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = S.holm([0.5, np.nan, 0.2])  # NaN stays NaN and is not counted: m = 2 -> 0.4, then max(0.4, 0.5)
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.4)
    assert S.holm([0.9, 0.8]).tolist() == [1.0, 1.0]


def test_minimum_detectable_effect_is_the_closed_form():
    # (z_0.975 + z_0.8) sd / sqrt(n) = (1.959964 + 0.841621) x 2 / sqrt(100) = 0.560317
    assert S.min_detectable_effect(2.0, 100) == pytest.approx(0.560317, abs=1e-6)
    # alpha 0.01, power 0.9: (2.575829 + 1.281552) x 1 / sqrt(25) = 0.771476
    assert S.min_detectable_effect(1.0, 25, alpha=0.01, power=0.9) == pytest.approx(0.771476, abs=1e-6)
    d = S.paired_difference(np.arange(40.0) % 7, np.zeros(40), resamples=300)
    assert d.mde == pytest.approx(S.min_detectable_effect(d.se, 1))
    with pytest.raises(ValueError):
        S.min_detectable_effect(1.0, 0)
