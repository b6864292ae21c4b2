"""The matched, conditional, frontier and ratio forms of claims (leaderboards.claims, leaderboards.frontier): a planted
effect comes back reproduced, none inconclusive, a reversed one contradicted; p-values are uniform under the null."""

import numpy as np
import pytest
from scipy import stats as sps

from evalharness import stats
from leaderboards import claims as C
from leaderboards import frontier as F

B = 400  # bootstrap draws: enough for these planted effects, seconds in all


def _est(rng, mean, noise, seed, seeds=3, units=48):
    """A seeds x units matrix about ``mean`` (a seed effect and unit noise) and its resampled mean."""
    m = mean + 0.1 * noise * rng.standard_normal((seeds, 1)) + noise * rng.standard_normal((seeds, units))
    return F.mean_estimate(m, B, seed)


def _method(rng, name, kls, reward, offset, seed):
    """A β grid: one point per KL value, reward(kl) + offset measured with noise."""
    return [F.Point(f"{name}-{i}", _est(rng, kl, 0.05, seed + 2 * i), _est(rng, reward(kl) + offset, 0.3, seed + 2 * i + 1))
            for i, kl in enumerate(kls)]


def reward(kl):
    return np.sqrt(kl)  # a concave reward-KL frontier, as seed 004 draws it


def test_mean_estimate_is_the_cell_mean_with_draws_about_it():
    m = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    e = F.mean_estimate(m, 500, 0)
    assert e.value == pytest.approx(3.0) and e.units == 3 and e.seeds == 2  # (1+2+3+4+5)/5
    lo, hi = e.ci()
    assert lo < 3.0 < hi and np.isfinite(e.draws).mean() > 0.9  # a draw of seed 0 alone at unit 3 has no cell


def test_gaps_interpolate_each_frontier_within_the_overlap_only():
    # A: y = x on [0, 2]; B: y = 0 on [1, 3]. Overlap [1, 2]; gaps at 1, 1.5, 2 are 1, 1.5, 2 (no extrapolation).
    assert F.gaps([2.0, 0.0], [2.0, 0.0], [1.0, 3.0], [0.0, 0.0], grid=3).tolist() == [1.0, 1.5, 2.0]
    assert F.gaps([0.0, 0.5], [0.0, 0.0], [1.0, 3.0], [0.0, 0.0]) is None
    assert F.gaps([1.5], [4.0], [1.0, 3.0], [0.0, 2.0]).tolist() == [3.5]  # a one-point side: at its own x


@pytest.mark.parametrize("offset, expected", [(0.3, "reproduced"), (0.0, "inconclusive"), (-0.3, "contradicted")])
def test_matched_claim_planted_none_and_reversed(offset, expected):
    rng = np.random.default_rng(10)
    a = _method(rng, "exo", [0.1, 0.3, 0.6, 0.9], reward, offset, 0)
    b = _method(rng, "dpo", [0.15, 0.4, 0.7, 1.0], reward, 0.0, 100)
    claim = C.parse_claim({"quantity": "gold_reward", "a": "exo", "relation": "higher", "b": "dpo",
                           "matched": "kl"}, "t")
    (v,) = C.evaluate_claims([claim], lambda c: C.frontier_effect(c, a, b), resamples=B)
    assert v.verdict == expected, v
    assert v.difference == pytest.approx(offset, abs=0.1) and v.ci_low < v.difference < v.ci_high
    assert "kl matched over [0.15" in v.note


def test_matched_claim_without_overlap_is_inconclusive_with_both_ranges():
    rng = np.random.default_rng(11)
    a = _method(rng, "exo", [0.1, 0.2], reward, 0.5, 0)
    b = _method(rng, "dpo", [0.6, 0.9], reward, 0.0, 10)
    claim = C.Claim("t", "gold_reward", "exo", "dpo", "higher", matched="kl")
    (v,) = C.evaluate_claims([claim], lambda c: C.frontier_effect(c, a, b), resamples=B)
    assert v.verdict == "inconclusive" and v.note.startswith("no overlap in kl: exo spans [0.1") and "dpo spans" in v.note
    assert np.isnan(v.p_value)


@pytest.mark.parametrize("offset, expected", [(8.0, "reproduced"), (0.0, "inconclusive"), (-8.0, "contradicted")])
def test_frontier_dominance_planted_none_and_reversed(offset, expected):
    # win rate (%) against KL: A's whole curve shifted by ``offset`` points
    rng = np.random.default_rng(12)
    win = lambda kl: 50 + 30 * np.sqrt(kl)  # noqa: E731
    a = [F.Point(f"a{i}", _est(rng, kl, 0.02, i), _est(rng, win(kl) + offset, 10, 50 + i)) for i, kl in
         enumerate([0.1, 0.3, 0.5])]
    b = [F.Point(f"b{i}", _est(rng, kl, 0.02, 10 + i), _est(rng, win(kl), 10, 60 + i)) for i, kl in
         enumerate([0.12, 0.32, 0.55])]
    claim = C.parse_claim({"a": "e-dpo", "relation": "dominates", "b": "dpo", "frontier": ["kl", "win_rate"]}, "t")
    (v,) = C.evaluate_claims([claim], lambda c: C.frontier_effect(c, a, b), resamples=B)
    assert v.verdict == expected, v
    # the effect is the smallest gap over the overlap: at most the planted shift, near it at these noise levels
    assert v.difference == pytest.approx(offset, abs=6.0)


@pytest.mark.parametrize("shift, verdict", [(0.0, "reproduced"), (0.2, "inconclusive")])
def test_conditional_claim_holds_only_when_the_condition_is_shown_within_tolerance(shift, verdict):
    rng = np.random.default_rng(13)
    margin_a, margin_b = _est(rng, 1.0, 0.3, 1), _est(rng, 2.0, 0.3, 2)  # A's margin lower by 1
    acc_a, acc_b = _est(rng, 0.8 + shift, 0.01, 3), _est(rng, 0.8, 0.01, 4)
    claim = C.parse_claim({"quantity": "margin", "a": "sr-dpo", "relation": "lower", "b": "dpo",
                           "given": "accuracy", "within": 0.05}, "t")
    effect = C.difference_effect(margin_a, margin_b)
    effect = C.Effect(effect.estimate, effect.draws, condition=C.difference_effect(acc_a, acc_b))
    (v,) = C.evaluate_claims([claim], lambda c: effect, resamples=B)
    assert v.verdict == verdict, v
    if verdict == "inconclusive":
        assert "accuracy differs by +0.19" in v.note and "condition does not hold" in v.note and np.isnan(v.p_value)
    else:
        assert "within ±0.05" in v.note and v.difference == pytest.approx(-1.0, abs=0.15)


@pytest.mark.parametrize("ratio, verdict", [(0.002, "reproduced"), (0.01, "inconclusive"), (0.05, "contradicted")])
def test_ratio_claim_below_a_fraction(ratio, verdict):
    rng = np.random.default_rng(14)
    sft = _est(rng, 10.0, 1.0, 1)
    dpo = _est(rng, 10.0 * ratio, 0.01 * ratio * 10, 2)
    claim = C.parse_claim({"quantity": "train:grad_norm", "a": "dpo", "relation": "below_fraction", "b": "sft",
                           "fraction": 0.01}, "t")
    (v,) = C.evaluate_claims([claim], lambda c: C.ratio_effect(dpo, sft), resamples=B)
    assert v.verdict == verdict, v
    assert v.difference == pytest.approx(ratio, rel=0.1)


def test_paired_p_values_are_uniform_under_the_null():
    # 300 null experiments (3 paired seeds x 40 prompts, a shared prompt effect): the p-values of "A - B = 0" follow
    # U(0, 1): a KS test does not reject, and about 5% fall at or below 0.05.
    rng = np.random.default_rng(15)
    ps = []
    for k in range(300):
        base = rng.standard_normal((1, 40)) + 0.2 * rng.standard_normal((3, 1))
        a = base + rng.standard_normal((3, 40))
        b = base + rng.standard_normal((3, 40))
        ps.append(stats.paired_difference(a, b, True, 300, k).p_value)
    ps = np.array(ps)
    assert sps.kstest(ps, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(ps <= 0.05) <= 0.10
    counts = np.histogram(ps, bins=5, range=(0, 1))[0]
    assert counts.min() >= 40  # 60 expected per bin


def test_the_frontier_doctests_hold():
    import doctest

    result = doctest.testmod(F)
    assert result.attempted > 0 and result.failed == 0
