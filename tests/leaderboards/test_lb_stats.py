"""Leaderboard statistics against hand-computed numbers, a direct MLE and a known Bernoulli."""

import math

import numpy as np
import pytest

from leaderboards import stats

NAN = np.nan


def test_combine_orders_follows_the_rule_and_counts_invalid_orders():
    # pair 0: A, A -> A        pair 1: A, B -> tie (disagree)   pair 2: tie, A -> tie (either says tie)
    # pair 3: B, B -> B        pair 4: A, unparsed -> A (one valid order decides)
    # pair 5: failed, failed -> no valid order (verdict 0 but n_valid 0)   pair 6: single stored order B -> B
    pair = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6])
    score = np.array([1, 1, 1, 0, 0.5, 1, 0, 0, 1, NAN, NAN, NAN, 0])
    c = stats.combine_orders(pair, score)
    assert c.verdict.tolist() == [1, 0, 0, -1, 1, 0, -1]
    assert c.n_valid.tolist() == [2, 2, 2, 2, 1, 0, 1]
    assert c.n_invalid.tolist() == [0, 0, 0, 0, 1, 2, 0]
    assert np.isnan(c.p_a[5])


def test_combine_orders_averages_probabilities_and_falls_back_to_the_hard_score():
    # pair 0: P(A)=0.8 and 0.6 -> 0.7;  pair 1: P(A)=0.9 and no probability on a tie -> (0.9 + 0.5)/2 = 0.7
    c = stats.combine_orders(np.array([0, 0, 1, 1]), np.array([1, 1, 1, 0.5]), np.array([0.8, 0.6, 0.9, NAN]))
    assert c.p_a.tolist() == pytest.approx([0.7, 0.7])


# Model 0 against baseline 1 on 8 prompts, combined verdicts from A's side:
#   +1 +1 +1 0 0 -1 -1 -1   -> 3 wins, 2 ties, 3 losses; W/T/L = 37.5 / 25 / 37.5 %
#   tie policy: outcomes 1 1 1 .5 .5 0 0 0: win rate (3 + 2/2)/8 = 0.5;
#     sample variance = (3*.25 + 2*0 + 3*.25)/7 = 1.5/7, SE = sqrt(1.5/7/8) = 0.163663...
#   exclude: the two ties dropped: 3/6 = 0.5, n = 6, SE = sqrt((6*.25)/5/6) = sqrt(0.05) = 0.223607
#   average (probabilities .9 .8 .7 .6 .55 .3 .2 .1): mean = 4.15/8 = 0.51875
VERDICTS = np.array([1, 1, 1, 0, 0, -1, -1, -1])
PROBS = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2, 0.1])


def _board(ties, verdict=VERDICTS, probs=PROBS, n_resamples=50):
    n = len(verdict)
    return stats.board_stats(np.zeros(n), np.ones(n), np.arange(n), verdict, probs, np.full(n, 10.0),
                             np.full(n, 10.0), 2, n, baseline=1, ties=ties, n_resamples=n_resamples)


def test_win_tie_lose_counts_and_win_rate_by_hand():
    s = _board("tie")
    assert (s.wins[0], s.ties[0], s.losses[0], s.n[0]) == (3, 2, 3, 8)
    assert s.win_rate[0] == pytest.approx(0.5)
    assert s.se[0] == pytest.approx(math.sqrt(1.5 / 7 / 8))
    assert (s.wins[1], s.n[1]) == (0, 0) and np.isnan(s.win_rate[1])  # the baseline is not rated against itself


def test_tie_policies():
    exclude = _board("exclude")
    assert (exclude.n[0], exclude.ties[0]) == (6, 2)  # W/T/L still counts every pair
    assert exclude.win_rate[0] == pytest.approx(0.5)
    assert exclude.se[0] == pytest.approx(math.sqrt(0.05))
    average = _board("average")
    assert average.win_rate[0] == pytest.approx(4.15 / 8)
    # Without probabilities, "average" is the "tie" policy.
    assert _board("average", probs=np.full(8, NAN)).win_rate[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="tie policy 'half'"):
        stats.pair_outcomes(VERDICTS, PROBS, "half")


def test_pooled_mode_counts_each_pair_for_both_sides():
    # Without a baseline: model 0 beat 1 twice and lost once -> 0: 2/3, 1: 1/3.
    s = stats.board_stats(np.array([0, 0, 1]), np.array([1, 1, 0]), np.arange(3), np.array([1, 1, 1]),
                          np.full(3, NAN), np.ones(3), np.ones(3), 2, 3, baseline=None, n_resamples=10)
    assert s.win_rate.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert s.bt[0] - s.bt[1] == pytest.approx(stats.ELO_SCALE * math.log(2), abs=1e-3)
    assert (s.bt[0] + s.bt[1]) / 2 == pytest.approx(1000.0)  # the mean is the anchor


def _direct_mle(wins, games, pairs, m, iters=20000):
    """Zermelo's fixed point (Hunter 2004 MM), a different algorithm: p_i <- W_i / sum_j n_ij / (p_i + p_j)."""
    p = [1.0] * m
    for _ in range(iters):
        new = []
        for i in range(m):
            w = sum(wk if a == i else g - wk for (a, b), wk, g in zip(pairs, wins, games) if i in (a, b))
            d = sum(g / (p[a] + p[b]) for (a, b), g in zip(pairs, games) if i in (a, b))
            new.append(w / d)
        mean_log = sum(math.log(x) for x in new) / m
        p = [x / math.exp(mean_log) for x in new]
    return np.log(p)


def test_bradley_terry_three_models_matches_a_direct_mle():
    pairs = np.array([[0, 1], [1, 2], [0, 2]])
    wins, games = np.array([7.0, 6.0, 8.5]), np.array([10.0, 9.0, 10.0])  # 8.5: a tie counted as half a win
    theta = stats.bt_fit(wins[None], games[None], pairs, 3)[0]
    assert theta.sum() == pytest.approx(0.0, abs=1e-9)
    assert theta == pytest.approx(_direct_mle(wins, games, [tuple(p) for p in pairs], 3), abs=1e-5)


def test_bradley_terry_known_answer_on_a_chain():
    # A beat B 3 of 4 and B beat C 3 of 4, no A-C games: the likelihood splits into two two-model problems, so
    # theta_A - theta_B = theta_B - theta_C = ln 3, i.e. 400 log10(3) = 190.85 Elo each.
    theta = stats.bt_fit(np.array([[3.0, 3.0]]), np.array([[4.0, 4.0]]), np.array([[0, 1], [1, 2]]), 3)
    elo = stats.to_elo(theta, anchor=2)[0]
    assert elo.tolist() == pytest.approx([1000 + 2 * 400 * math.log10(3), 1000 + 400 * math.log10(3), 1000],
                                         abs=1e-3)


def test_bradley_terry_stays_finite_when_a_model_wins_everything():
    theta = stats.bt_fit(np.array([[5.0]]), np.array([[5.0]]), np.array([[0, 1]]), 2)
    assert np.all(np.isfinite(theta)) and theta[0, 0] - theta[0, 1] > 10  # far apart, not infinite


def test_lc_win_rate_equals_the_raw_win_rate_when_lengths_are_equal():
    rng = np.random.default_rng(0)
    y = rng.choice([0.0, 0.5, 1.0], size=200, p=[0.5, 0.1, 0.4])
    model = np.repeat([0, 1], 100)
    rate, se = stats.lc_win_rate(model, y, np.ones(200, bool), np.full(200, 50.0), np.full(200, 50.0), 2)
    assert rate.tolist() == pytest.approx([y[:100].mean(), y[100:].mean()], abs=1e-12)
    # With z = 0 the delta-method SE is the binomial-model SE sqrt(p(1-p)/n).
    p = y[:100].mean()
    assert se[0] == pytest.approx(math.sqrt(p * (1 - p) / 100), rel=1e-6)


def test_lc_win_rate_removes_a_pure_length_effect():
    # The judge prefers the longer answer with probability sigmoid(0 + 3 z): half the pairs are longer, half shorter,
    # symmetric in z, so the raw win rate is about 0.5 and so is the LC rate. Make the model mostly longer: raw
    # rises well above 0.5, the LC rate (at equal length) stays near 0.5.
    rng = np.random.default_rng(1)
    n = 20000
    delta = np.where(rng.random(n) < 0.8, 1.0, -1.0) * rng.uniform(50, 150, n)
    z = np.tanh(delta / delta.std())
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * z))).astype(float)
    rate, _ = stats.lc_win_rate(np.zeros(n, int), y, np.ones(n, bool), 200 + delta, np.full(n, 200.0), 1)
    assert y.mean() > 0.7
    assert rate[0] == pytest.approx(0.5, abs=0.03)


def test_bootstrap_ci_covers_a_known_bernoulli_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    p, n, trials, covered, ses = 0.3, 100, 300, 0, []
    for t in range(trials):
        v = np.where(rng.random(n) < p, 1, -1)
        s = stats.board_stats(np.zeros(n), np.ones(n), np.arange(n), v, np.full(n, NAN), np.ones(n), np.ones(n),
                              2, n, baseline=1, n_resamples=400, seed=t)
        covered += s.ci_low[0] <= p <= s.ci_high[0]
        ses.append(s.se[0])
    assert 0.90 <= covered / trials <= 0.98
    assert np.mean(ses) == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.05)


def test_bootstrap_is_seeded_and_resamples_prompts_not_pairs():
    a = _board("tie", n_resamples=200)
    b = _board("tie", n_resamples=200)
    assert (a.ci_low[0], a.ci_high[0]) == (b.ci_low[0], b.ci_high[0])
    # All 8 pairs on ONE prompt: every resample draws that prompt, so the CI collapses to the point estimate.
    n = 8
    one = stats.board_stats(np.zeros(n), np.ones(n), np.zeros(n), VERDICTS, PROBS, np.ones(n), np.ones(n), 2, 1,
                            baseline=1, n_resamples=100)
    assert one.ci_low[0] == one.ci_high[0] == pytest.approx(0.5)


def test_resample_counts_do_not_depend_on_chunking():
    whole = np.concatenate(list(stats.resample_counts(7, 150, seed=3)))
    assert whole.shape == (150, 7) and np.all(whole.sum(axis=1) == 7)
    head = np.concatenate(list(stats.resample_counts(7, 70, seed=3)))
    assert np.array_equal(whole[:64], head[:64])  # the first chunk is the same draw whatever B is


def test_resampled_sums_in_float32_are_exact_for_half_integer_data():
    rng = np.random.default_rng(4)
    sums = rng.integers(0, 200, size=(30, 500)) / 2.0  # outcomes of 0, 1/2, 1 summed per prompt: halves
    counts = next(stats.resample_counts(500, 64, seed=0))
    fast = stats.ResampledSums(sums)
    assert fast.sums32 is not None
    assert np.array_equal(fast(counts), counts @ sums.T)  # bit for bit
    probabilities = stats.ResampledSums(sums + 0.01)  # the "average" policy's sums: float64 throughout
    assert probabilities.sums32 is None
