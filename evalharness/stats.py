"""The bootstrap, once: seeded resampling of units, percentile intervals, and means with their intervals.

Metrics, leaderboards and diagnostics all draw their resamples here. A resample is n units drawn with replacement,
given either as indices [b, n] or as counts W [b, n] (W[b, i] = how often unit i is in resample b, each row summing to
n); with counts, a statistic over every resample is a few matrix products (a mean is ``W @ x / n``).

The draws depend only on (n, resamples, seed) and the two settings that say how they are cut into chunks of rows:

- ``chunk``: rows drawn per generator call (default: as many as fit ``CELLS`` cells, bounding memory for any n);
- ``seed_per_chunk``: False draws every chunk from one generator seeded with ``seed``; True gives chunk i its own
  generator seeded with ``(seed, i)``, so a chunk's rows do not depend on how many resamples come before it.

Each caller keeps the scheme its stored and printed figures were made with (metrics: one generator, ``CELLS``;
leaderboards: 64 rows per chunk, one generator per chunk; diagnostics: every resample in one call).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

CELLS = 2_000_000  # index cells of one default chunk (16 MB of int64): bounds memory for any n


def resample_indices(n: int, resamples: int, seed: int, chunk: int | None = None,
                     seed_per_chunk: bool = False) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n units as index arrays [b, n] with entries in 0..n-1, ``chunk`` rows at a time."""
    size = max(1, chunk if chunk is not None else CELLS // max(n, 1))
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, resamples, size)):
        if seed_per_chunk:
            rng = np.random.default_rng([seed, i])
        yield rng.integers(0, n, size=(min(size, resamples - start), n))


def resample_counts(n: int, resamples: int, seed: int, chunk: int | None = None,
                    seed_per_chunk: bool = False) -> Iterator[np.ndarray]:
    """The resamples of ``resample_indices`` as float64 count matrices W [b, n] (each row sums to n)."""
    for idx in resample_indices(n, resamples, seed, chunk, seed_per_chunk):
        b = idx.shape[0]
        flat = idx + n * np.arange(b)[:, None]
        yield np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def bootstrap(stat: Callable[[np.ndarray], np.ndarray], n: int, resamples: int, seed: int, chunk: int | None = None,
              seed_per_chunk: bool = False) -> np.ndarray:
    """``stat(W) -> [b, ...]`` evaluated on every chunk of counts: the bootstrap distribution [resamples, ...]."""
    if resamples <= 0 or n == 0:
        return np.empty(0)
    return np.concatenate([np.asarray(stat(w), dtype=np.float64)
                           for w in resample_counts(n, resamples, seed, chunk, seed_per_chunk)])


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over axis 0 of a bootstrap distribution [B, ...], ignoring NaN draws (a resample
    without a model, a constant resample's correlation); NaN where no draw is left."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.shape[0] == 0:
        nan = np.full(draws.shape[1:], np.nan)
        return nan, nan.copy()
    tail = (1.0 - level) / 2.0 * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, which is what we want
        return np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100.0 - tail, axis=0)


def mean_ci(values, resamples: int = 1000, seed: int = 0, level: float = 0.95, chunk: int | None = None,
            ) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high): the mean of ``values`` [n] and the percentile interval of its resampled means.

    The bounds are NaN when there are no resamples. Raises ValueError when there are no values.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n == 0:
        raise ValueError("no values to average")
    lo, hi = percentile_ci(bootstrap(lambda w: w @ v / n, n, resamples, seed, chunk), level)
    return float(v.mean()), float(lo), float(hi)


# ------------------------------------------------------------------------------- seeds x prompts, paired, power
#
# Replicates of one configuration (training seeds) are scored on one prompt set, so their outcomes form a crossed
# seeds x prompts matrix [S, P] (NaN: a cell that was not measured). Every seed meets the same prompts: a hard prompt is
# hard for all of them. The two-level bootstrap therefore resamples the two axes *independently and together* (the
# "pigeonhole" bootstrap of crossed random effects, Owen 2007, Ann. Appl. Stat. 1(1)): each draw takes S seeds with
# replacement and P prompts with replacement and averages the S x P cells they pick. Resampling prompts afresh within
# each seed instead (a nested scheme) would treat one prompt's effect as independent across seeds and shrink the
# prompt component of the variance by a factor S.
#
# For X = mu + a_seed + b_prompt + e the variance of the cell mean is sa²/S + sb²/P + se²/(SP), but the pigeonhole
# draws have, in expectation, (S-1)/S of the seed term and about three times the interaction term (the row means and
# the column means each carry e again). Paired differences are mostly that interaction (what A and B share cancels),
# where the raw draws would be far too wide (p-values piled up near 1). So the draws keep their shape and are scaled
# about the estimate to the unbiased variance of the two-way random-effects ANOVA, (MS_seed + MS_prompt - MS_cell) /
# (SP) (at least max(MS_seed, MS_prompt) / (SP), which estimates a part of it), computed on the prompts every seed
# measured; with one seed (or one prompt) that is the usual n / (n - 1) correction of a plain bootstrap. Few seeds
# remain a limit no resampling removes: with S = 3 the seed term rests on 2 degrees of freedom and
# a normal-width interval is too narrow where seeds disagree.


def _two_level_draws(mats: list[np.ndarray], resamples: int, seed: int, shared_seeds: bool, chunk: int = 64,
                     ) -> np.ndarray:
    """Per draw, the resampled cell mean of each matrix [S_k, P] (one prompt draw shared by all): [resamples, K].
    ``shared_seeds``: one seed draw for every matrix (their rows are the same seeds)."""
    P = mats[0].shape[1]
    vals = [np.nan_to_num(m, nan=0.0) for m in mats]
    seen = [(~np.isnan(m)).astype(np.float64) for m in mats]
    rng = np.random.default_rng([seed, 2])  # its own stream: resample_indices(…, seed) draws stay as they were
    out = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        wp = np.stack([np.bincount(r, minlength=P) for r in rng.integers(0, P, size=(b, P))]).astype(np.float64)
        cols, ws = [], None
        for v, s in zip(vals, seen):
            S = v.shape[0]
            if ws is None or not shared_seeds:
                ws = np.stack([np.bincount(r, minlength=S) for r in rng.integers(0, S, size=(b, S))]
                              ).astype(np.float64)
            num, den = ((ws @ v) * wp).sum(1), ((ws @ s) * wp).sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols.append(np.where(den > 0, num / den, np.nan))
        out.append(np.stack(cols, axis=1))
    return np.concatenate(out) if out else np.empty((0, len(mats)))


def _matrix(x, name: str = "values") -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    m = m[None, :] if m.ndim == 1 else m
    if m.ndim != 2 or m.size == 0 or np.isnan(m).all():
        raise ValueError(f"{name}: need a seeds x prompts matrix with at least one measured cell")
    return m


def two_level_mean(values, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of a seeds x prompts matrix [S, P] (a 1-D array is one seed), NaN cells left out:
    the mean of the measured cells and the percentile interval of the two-level (seeds x prompts) bootstrap."""
    m = _matrix(values)
    mean = float(np.nanmean(m))
    lo, hi = percentile_ci(_scaled(_two_level_draws([m], resamples, seed, True)[:, 0], mean, m), level)
    return mean, float(lo), float(hi)


def _scaled(draws: np.ndarray, estimate: float, m: np.ndarray) -> np.ndarray:
    """The draws scaled about ``estimate`` by sqrt(unbiased variance / the pigeonhole's own variance), both of the
    cell mean of the prompts (columns) every seed measured; unchanged where that leaves fewer than two of either. A
    matrix of one seed or one prompt is a plain bootstrap of its n cells, scaled by sqrt(n / (n - 1))."""
    if min(m.shape) == 1:
        n = int(np.sum(~np.isnan(m)))
        return draws if n < 2 else estimate + (draws - estimate) * math.sqrt(n / (n - 1))
    full = m[:, ~np.isnan(m).any(0)]
    S, P = full.shape
    if S < 2 or P < 2:
        return draws
    grand = full.mean()
    r, c = full.mean(1) - grand, full.mean(0) - grand
    u = full - grand - r[:, None] - c[None, :]
    own = (r @ r) / S / S + (c @ c) / P / P + (u * u).mean() / (S * P)  # exact for a complete matrix
    ms_seed, ms_prompt = P * (r @ r) / (S - 1), S * (c @ c) / (P - 1)
    ms_cell = (u * u).sum() / ((S - 1) * (P - 1))
    unbiased = max(ms_seed + ms_prompt - ms_cell, ms_seed, ms_prompt) / (S * P)
    return draws if own <= 0 else estimate + (draws - estimate) * math.sqrt(unbiased / own)


@dataclass(frozen=True)
class Difference:
    """A minus B over shared prompts: the estimate, its percentile interval at ``level``, the two-sided p-value of
    "no difference" (see ``paired_difference``), the bootstrap SE and the minimum detectable effect at that SE
    (alpha 0.05, power 0.8); ``seeds`` as paired (both sides the same seeds) or per side."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float
    mde: float
    prompts: int
    seeds: tuple[int, int]
    paired_seeds: bool
    level: float = 0.95


def paired_difference(a, b, paired_seeds: bool = True, resamples: int = 2000, seed: int = 0,
                      level: float = 0.95) -> Difference:
    """A - B for two seeds x prompts matrices whose columns are the same prompts (a 1-D array is one seed).

    ``paired_seeds``: row s of A and of B share seed s (same initialisation and data order), so the difference is
    taken per (seed, prompt) unit and the two-level bootstrap runs over that difference matrix; otherwise the estimate
    is the difference of the two-level means, each side's seeds resampled on their own and the prompts drawn once for
    both (prompts stay paired). The p-value inverts the same bootstrap (the smallest 1 - level at which the percentile
    interval excludes 0: 2 x the share of draws on the far side of 0, with the +1 correction, at most 1), so a claim's
    interval and its p-value never disagree."""
    ma, mb = _matrix(a, "A"), _matrix(b, "B")
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"A and B must cover the same prompts (columns): {ma.shape[1]} != {mb.shape[1]}")
    if paired_seeds and ma.shape[0] != mb.shape[0]:
        raise ValueError(f"paired seeds need as many seeds on each side: {ma.shape[0]} != {mb.shape[0]}")
    if paired_seeds:
        d = ma - mb
        est = float(np.nanmean(_matrix(d, "A - B")))
        draws = _scaled(_two_level_draws([d], resamples, seed, True)[:, 0], est, d)
    else:
        mean_a, mean_b = float(np.nanmean(ma)), float(np.nanmean(mb))
        est = mean_a - mean_b
        both = _two_level_draws([ma, mb], resamples, seed, False)
        draws = _scaled(both[:, 0], mean_a, ma) - _scaled(both[:, 1], mean_b, mb)
    draws = draws[~np.isnan(draws)]
    lo, hi = percentile_ci(draws, level)
    p = bootstrap_p(draws)
    se = float(draws.std(ddof=1)) if draws.size > 1 else float("nan")
    prompts = int(((~np.isnan(ma)).any(0) & (~np.isnan(mb)).any(0)).sum())
    return Difference(est, float(lo), float(hi), p, se, min_detectable_effect(se, 1), prompts,
                      (ma.shape[0], mb.shape[0]), paired_seeds, level)


def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided p-value of "the statistic is 0" from its bootstrap draws: 2 x min(share <= 0, share >= 0), each
    share (count + 1) / (B + 1) so no p is 0 from finitely many draws; NaN without draws."""
    draws = np.asarray(draws, dtype=np.float64)
    n = draws.size
    if n == 0:
        return float("nan")
    below, above = (1 + np.sum(draws <= 0)) / (n + 1), (1 + np.sum(draws >= 0)) / (n + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, the i-th (1-based) of m becomes
    max over j <= i of min(1, (m - j + 1) p_(j)); rejecting where adjusted <= alpha controls the family-wise error at
    alpha. NaN p-values stay NaN and do not count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        out[k] = running
    return out


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided test at ``alpha`` detects with probability ``power`` from n
    paired units of standard deviation ``sd`` (normal approximation): (z_{1-alpha/2} + z_power) sd / sqrt(n). With
    (se, 1) it is the same from a standard error (2.80 se at the defaults)."""
    if n <= 0 or not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("min_detectable_effect: need n > 0, 0 < alpha < 1 and 0 < power < 1")
    z = NormalDist()
    return float((z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * sd / math.sqrt(n))
