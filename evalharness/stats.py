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

import warnings
from collections.abc import Callable, Iterator

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
