"""Statistical metrics of a checkpoint as pure functions over log-probs, each with n, a standard error and a bootstrap CI.

The formulas are LOSSES.md "Statistical metrics"; ``lp`` is a summed response log-prob, ``T`` its token count:

- ``perplexity``            exp(-Σ lp(y+|x+) / Σ T+), token-weighted over held-out pairs (seed 000)
- ``agility``               mean(f+ - f-), f = exp(lp / T), the per-token geometric-mean probability (ExMATE's form)
- ``agility_seqprob``       mean(exp(lp+) - exp(lp-)) in float64; it underflows to 0 for long texts (seed 000 Fig. 3)
- ``logp_margin``           mean(lp+ - lp-)
- ``margin`` / ``accuracy``  mean(β h) / mean(h > 0), h the log-ratio margin to the reference (seed 002)
- ``prompt_augmented_accuracy``  mean(h_p > 0), h_p = h with p ⊕ x± as contexts (seed 002 §4, metric iii)
- ``kl`` / ``kl_per_token``  per prompt (1/M) Σ_i [lpπ(y_i) - lpref(y_i)], y_i ~ π; averaged over prompts (seed 004)
- ``forward_kl``            the same on the reference's own samples: (1/M) Σ_i [lpref(y_i) - lpπ(y_i)], y_i ~ ref (seed 003)
- ``margin_pearson`` / ``margin_spearman`` / ``margin_kendall``  correlation of h with a judge's score difference
  s+ - s- (seed 002 §4.4; Kendall is tau-b)

Bootstrap resamples are drawn by ``evalharness.stats`` as count matrices W [B, n] (W[b, i] = how often unit i is in
resample b; one generator seeded with ``seed``, chunks of ``stats.CELLS`` cells), so every statistic is a few matrix
products over all resamples at once. The unit is a pair for held-out metrics and a prompt for KL. The CI is the
percentile interval; the standard error is the textbook one where there is one (s/√n for a mean, the ratio-estimator
delta method for perplexity) and the bootstrap standard deviation for correlations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evalharness.stats import bootstrap, mean_ci, percentile_ci

PAIR_METRICS = ("perplexity", "agility", "agility_seqprob", "logp_margin")
REFERENCE_METRICS = ("margin", "accuracy", "prompt_augmented_accuracy")
SAMPLE_METRICS = ("kl", "kl_per_token", "forward_kl")
CORRELATIONS = ("margin_pearson", "margin_spearman", "margin_kendall")
METRICS = PAIR_METRICS + REFERENCE_METRICS + SAMPLE_METRICS + CORRELATIONS


@dataclass(frozen=True)
class Estimate:
    """A statistic with its uncertainty. ``se``/``ci_*`` are None when they are undefined (n < 2, no resamples)."""

    value: float
    n: int
    se: float | None
    ci_low: float | None
    ci_high: float | None
    note: str = ""  # what a reader must know to read the value (e.g. how many probabilities underflowed)


# ------------------------------------------------------------------------------------------------------ estimates


def _estimate(value: float, n: int, se: float | None, lo: float, hi: float, note: str = "") -> Estimate:
    """An Estimate with None for what is undefined: a non-finite se, NaN bounds (no resamples, no finite draw)."""
    lo, hi = (None if np.isnan(x) else float(x) for x in (lo, hi))
    return Estimate(float(value), int(n), None if se is None or not math.isfinite(se) else float(se), lo, hi, note)


def mean_estimate(values, resamples: int = 1000, seed: int = 0, note: str = "") -> Estimate:
    """mean(values) with se = s/√n (sample sd, ddof=1) and a percentile CI over resampled units."""
    v = np.asarray(values, dtype=np.float64)
    mean, lo, hi = mean_ci(v, resamples, seed)
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
    return _estimate(mean, v.size, se, lo, hi, note)


# ------------------------------------------------------------------------------------------------- held-out pairs


def perplexity(lp, tokens, resamples: int = 1000, seed: int = 0) -> Estimate:
    """exp(-Σ lp / Σ T) over sequences (token-weighted), resampling whole sequences.

    ``lp`` [n] summed log-probs of y+ given x+, ``tokens`` [n] their token counts. The se is the delta method for a
    ratio estimator: R = Σlp/ΣT, se(R) = sqrt(Σ(lp_i - R T_i)² / (n(n-1))) / mean(T), se(ppl) = ppl · se(R).
    """
    lp, t = np.asarray(lp, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    n = lp.size
    if n == 0 or t.sum() <= 0:
        raise ValueError("perplexity needs at least one scored token")
    ratio = lp.sum() / t.sum()
    value = math.exp(-ratio)
    se = None
    if n > 1:
        resid = lp - ratio * t
        se = value * math.sqrt((resid**2).sum() / (n * (n - 1))) / t.mean()
    draws = bootstrap(lambda w: np.exp(-(w @ lp) / (w @ t)), n, resamples, seed)
    return _estimate(value, n, se, *percentile_ci(draws))


def geometric_mean_probs(lp, tokens) -> np.ndarray:
    """f = exp(lp / T) [n]: the per-token geometric-mean probability of each sequence (ExMATE's agility form)."""
    return np.exp(np.asarray(lp, dtype=np.float64) / np.asarray(tokens, dtype=np.float64))


def agility_values(lp_pos, t_pos, lp_neg, t_neg) -> np.ndarray:
    """f+ - f- per pair [n]."""
    return geometric_mean_probs(lp_pos, t_pos) - geometric_mean_probs(lp_neg, t_neg)


def seqprob_values(lp_pos, lp_neg) -> tuple[np.ndarray, int]:
    """exp(lp+) - exp(lp-) per pair in float64, and how many of the 2n probabilities underflowed to exactly 0.

    exp underflows below lp ≈ -745 (float64's smallest subnormal): the raw sequence-probability form is then 0 - 0.
    That is the point seed 000 makes about it, so the zeros are kept and counted, not hidden.
    """
    p_pos = np.exp(np.asarray(lp_pos, dtype=np.float64))
    p_neg = np.exp(np.asarray(lp_neg, dtype=np.float64))
    return p_pos - p_neg, int((p_pos == 0).sum() + (p_neg == 0).sum())


def log_ratio_margins(policy_pos, reference_pos, policy_neg, reference_neg) -> np.ndarray:
    """h = [lpπ(y+|x+) - lpref(y+|x+)] - [lpπ(y-|x-) - lpref(y-|x-)] per pair [n] (LOSSES.md notation)."""
    f = np.asarray
    return (f(policy_pos, np.float64) - f(reference_pos, np.float64)) - (
        f(policy_neg, np.float64) - f(reference_neg, np.float64))


def pair_metrics(lp_pos, t_pos, lp_neg, t_neg, resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """The four metrics that need only the policy: perplexity, agility (two forms) and the log-prob margin."""
    seqprob, zeros = seqprob_values(lp_pos, lp_neg)
    note = f"{zeros} of {2 * len(seqprob)} sequence probabilities underflow to 0 in float64" if zeros else ""
    return {
        "perplexity": perplexity(lp_pos, t_pos, resamples, seed),
        "agility": mean_estimate(agility_values(lp_pos, t_pos, lp_neg, t_neg), resamples, seed),
        "agility_seqprob": mean_estimate(seqprob, resamples, seed, note=note),
        "logp_margin": mean_estimate(np.asarray(lp_pos, np.float64) - np.asarray(lp_neg, np.float64), resamples, seed),
    }


def reward_metrics(h, resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """margin = mean(h) (seed 002's "average marginal", LOSSES.md) and accuracy = mean(h > 0); a tie is a miss.

    h carries no β: the trainer's logged margin is β·h, so divide that by the run's β to compare.
    """
    h = np.asarray(h, dtype=np.float64)
    return {"margin": mean_estimate(h, resamples, seed),
            "accuracy": mean_estimate((h > 0).astype(np.float64), resamples, seed)}


# ------------------------------------------------------------------------------------------------------------- KL


def per_prompt_means(prompt_keys, values, tokens=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Average sample values within each prompt: (1/M_p) Σ_i v_i  [P], in order of first appearance.

    With ``tokens``, also the per-token form Σ_i v_i / Σ_i T_i per prompt [P] (NaN for a prompt whose samples have no
    tokens at all).
    """
    keys = list(prompt_keys)
    order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    idx = np.fromiter((order[k] for k in keys), dtype=np.int64, count=len(keys))
    v = np.asarray(values, dtype=np.float64)
    counts = np.bincount(idx, minlength=len(order))
    sums = np.bincount(idx, weights=v, minlength=len(order))
    per_token = None
    if tokens is not None:
        t = np.bincount(idx, weights=np.asarray(tokens, dtype=np.float64), minlength=len(order))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_token = np.where(t > 0, sums / np.where(t > 0, t, 1), np.nan)
    return sums / counts, per_token


def kl_metrics(prompt_keys, policy_logp, reference_logp, tokens, resamples: int = 1000,
               seed: int = 0) -> dict[str, Estimate]:
    """Monte-Carlo KL(π || ref) from the policy's own samples, per prompt then averaged; resamples prompts.

    ``kl`` is the mean over prompts of (1/M) Σ_i [lpπ(y_i|x) - lpref(y_i|x)]; ``kl_per_token`` is the mean over prompts
    of Σ_i [lpπ - lpref] / Σ_i T_i (the KL per generated token). Both log-probs must be at the sampling temperature.
    """
    diff = np.asarray(policy_logp, np.float64) - np.asarray(reference_logp, np.float64)
    kl, per_token = per_prompt_means(prompt_keys, diff, tokens)
    out = {"kl": mean_estimate(kl, resamples, seed)}
    scored = per_token[~np.isnan(per_token)]
    if scored.size:
        note = f"{per_token.size - scored.size} prompts with no generated tokens left out" if scored.size < kl.size else ""
        out["kl_per_token"] = mean_estimate(scored, resamples, seed, note=note)
    return out


def forward_kl(prompt_keys, reference_logp, policy_logp, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Monte-Carlo KL(ref || π) from the reference's own samples: per prompt (1/M) Σ_i [lpref - lpπ], averaged."""
    diff = np.asarray(reference_logp, np.float64) - np.asarray(policy_logp, np.float64)
    per_prompt, _ = per_prompt_means(prompt_keys, diff)
    return mean_estimate(per_prompt, resamples, seed)


# --------------------------------------------------------------------------------------------------- correlations


def _weighted_pearson(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each resample [b]; ``x``/``y`` are [n] or per-resample [b, n] values, ``w`` [b, n] counts."""
    m = w.sum(1)
    mx, my = (w * x).sum(1) / m, (w * y).sum(1) / m
    dx, dy = x - mx[:, None], y - my[:, None]
    cov = (w * dx * dy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt((w * dx * dx).sum(1) * (w * dy * dy).sum(1))


def _weighted_ranks(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The average (1-based) rank of each unit's value within each resample [b, n]: ties share their mean rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts_mask = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(starts_mask) - 1  # tie group of each sorted position
    starts = np.flatnonzero(starts_mask)
    ends = np.r_[starts[1:], len(x)]  # one past each group's last position
    cum = np.concatenate([np.zeros((w.shape[0], 1)), w[:, order].cumsum(1)], axis=1)
    below, tied = cum[:, starts], cum[:, ends] - cum[:, starts]
    ranks_sorted = (below + (tied + 1) / 2)[:, group]
    ranks = np.empty_like(ranks_sorted)
    ranks[:, order] = ranks_sorted
    return ranks


def _weighted_kendall(w: np.ndarray, x: np.ndarray, y: np.ndarray, block: int = 256) -> np.ndarray:
    """Kendall's tau-b of each resample [b]: (C - D) / sqrt((n0 - n1)(n0 - n2)).

    With counts w, Σ_ij w_i w_j sign(x_i - x_j) sign(y_i - y_j) = 2(C - D), and Σ_ij w_i w_j [x_i = x_j] - Σ w_i = 2 n1
    (copies of one unit are tied with each other), so each is a quadratic form, built a block of columns at a time.
    """
    m = w.sum(1)
    s = np.zeros(w.shape[0])
    tx = np.zeros(w.shape[0])
    ty = np.zeros(w.shape[0])
    for start in range(0, len(x), block):
        cols = slice(start, start + block)
        sx, sy = np.sign(x[:, None] - x[None, cols]), np.sign(y[:, None] - y[None, cols])
        wc = w[:, cols]
        s += ((w @ (sx * sy)) * wc).sum(1)
        tx += ((w @ (sx == 0)) * wc).sum(1)
        ty += ((w @ (sy == 0)) * wc).sum(1)
    n0 = m * (m - 1) / 2
    n1, n2 = (tx - m) / 2, (ty - m) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s / 2) / np.sqrt((n0 - n1) * (n0 - n2))


_CORRELATION_FNS = {
    "margin_pearson": _weighted_pearson,
    "margin_spearman": lambda w, x, y: _weighted_pearson(w, _weighted_ranks(w, x), _weighted_ranks(w, y)),
    "margin_kendall": _weighted_kendall,
}


def correlation(kind: str, x, y, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Pearson, Spearman (Pearson of average ranks) or Kendall tau-b of x and y, resampling (x_i, y_i) pairs.

    ``kind`` is one of CORRELATIONS. The se is the bootstrap standard deviation; a resample in which x or y is constant
    has no correlation and is left out of the CI (the value is NaN when the data themselves are constant).
    """
    fn = _CORRELATION_FNS[kind]
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"{kind} needs two equally long series of at least 2 values, got {x.shape} and {y.shape}")
    n = x.size
    value = float(fn(np.ones((1, n)), x, y)[0])
    draws = bootstrap(lambda w: fn(w, x, y), n, resamples, seed)
    finite = draws[~np.isnan(draws)]
    se = float(finite.std(ddof=1)) if finite.size > 1 else None
    return _estimate(value, n, se, *percentile_ci(draws))
