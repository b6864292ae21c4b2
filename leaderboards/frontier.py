"""Frontiers with uncertainty: resampled means of measured quantities, and two methods' curves compared at matched
values of a second quantity.

A *point* is one configuration (one β of a method's grid, its seed replicates together) with an estimate and
bootstrap draws of each quantity; a *frontier* is a method's points joined in order of the matching quantity (x).

Matching rule (``gaps``): each frontier is linearly interpolated (``numpy.interp``) on ``GRID`` evenly spaced x values
across the overlap of the two x ranges, [max of the minima, min of the maxima]; no extrapolation. Where the ranges do
not overlap there is nothing to compare (``None``: the claim is inconclusive). A method with one configuration is a
frontier of one point: it overlaps another only where the other's range covers its x. Every bootstrap draw repeats
the whole computation on that draw's x and y values (so the overlap moves with the draws); a draw whose ranges do not
overlap is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

GRID = 21  # x values per overlap: fine enough for a β grid of a few points, cheap across 2000 draws


@dataclass(frozen=True)
class Estimate:
    """A quantity of one configuration: the estimate and its bootstrap draws [B] (same B for every estimate that
    is compared), from ``units`` measured units over ``seeds`` seeds."""

    value: float
    draws: np.ndarray
    units: int = 1
    seeds: int = 1

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        d = self.draws[np.isfinite(self.draws)]
        if d.size == 0:
            return float("nan"), float("nan")
        lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)


def mean_estimate(values, resamples: int = 2000, seed: int = 0) -> Estimate:
    """The mean of a seeds x units matrix [S, P] (a 1-D array is one seed; NaN cells left out) and its two-level
    bootstrap draws: per draw, S seeds drawn with replacement and P units (prompts, steps) drawn with replacement,
    one unit draw shared by every seed (a prompt is the same prompt for every seed)."""
    m = np.asarray(values, dtype=np.float64)
    m = m[None, :] if m.ndim == 1 else m
    if m.ndim != 2 or not np.isfinite(m).any():
        raise ValueError("need a seeds x units matrix with at least one measured cell")
    S, P = m.shape
    seen = np.isfinite(m).astype(np.float64)
    vals = np.where(seen > 0, m, 0.0)
    rng = np.random.default_rng([seed, 7])
    ws = rng.multinomial(S, np.full(S, 1.0 / S), size=resamples).astype(np.float64)
    wp = rng.multinomial(P, np.full(P, 1.0 / P), size=resamples).astype(np.float64)
    num = np.einsum("bs,sp,bp->b", ws, vals, wp)
    den = np.einsum("bs,sp,bp->b", ws, seen, wp)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.where(den > 0, num / den, np.nan)
    return Estimate(float(np.nanmean(m)), draws, int(np.isfinite(m).any(0).sum()), S)


def normal_estimate(value: float, se: float, resamples: int = 2000, seed: int = 0) -> Estimate:
    """One stored value with its standard error (a per-checkpoint metric of one seed): normal draws about it."""
    rng = np.random.default_rng([seed, 8])
    return Estimate(float(value), value + se * rng.standard_normal(resamples))


@dataclass(frozen=True)
class Point:
    """One configuration on a frontier: its name and the two quantities (x: the matching one, y: the compared one)."""

    name: str
    x: Estimate
    y: Estimate


def overlap(xa: Sequence[float], xb: Sequence[float]) -> tuple[float, float] | None:
    """[max of the minima, min of the maxima] of two x ranges, None where they do not meet.

    >>> overlap([1.0, 3.0], [2.0, 5.0])
    (2.0, 3.0)
    >>> overlap([1.0], [2.0, 5.0]) is None
    True
    """
    lo, hi = max(min(xa), min(xb)), min(max(xa), max(xb))
    return (float(lo), float(hi)) if lo <= hi else None


def gaps(xa, ya, xb, yb, grid: int = GRID) -> np.ndarray | None:
    """y_A(x) - y_B(x) on ``grid`` x values across the overlap (module docstring), None without an overlap.

    >>> gaps([0.0, 2.0], [0.0, 2.0], [1.0, 3.0], [0.0, 0.0], grid=3).tolist()
    [1.0, 1.5, 2.0]
    """
    span = overlap(xa, xb)
    if span is None:
        return None
    at = np.linspace(span[0], span[1], grid) if span[1] > span[0] else np.array([span[0]])
    return _interp(at, xa, ya) - _interp(at, xb, yb)


def _interp(at: np.ndarray, xs, ys) -> np.ndarray:
    order = np.argsort(np.asarray(xs, dtype=np.float64), kind="stable")
    return np.interp(at, np.asarray(xs, dtype=np.float64)[order], np.asarray(ys, dtype=np.float64)[order])


@dataclass(frozen=True)
class Matched:
    """A statistic of the gaps between two frontiers: its estimate, its draws, and how many draws had no overlap."""

    estimate: float
    draws: np.ndarray
    span: tuple[float, float]
    dropped: int


def matched(a: Sequence[Point], b: Sequence[Point], statistic: Callable[[np.ndarray], float]) -> Matched | None:
    """``statistic`` (``np.mean``: A's advantage at matched x; ``np.min``: dominance) of the gaps between the two
    frontiers, and its bootstrap draws; None when the estimates' x ranges do not overlap."""
    xa, ya = [p.x.value for p in a], [p.y.value for p in a]
    xb, yb = [p.x.value for p in b], [p.y.value for p in b]
    g = gaps(xa, ya, xb, yb)
    if g is None:
        return None
    B = min(len(p.x.draws) for p in (*a, *b))
    draws = np.full(B, np.nan)
    for k in range(B):
        gk = gaps([p.x.draws[k] for p in a], [p.y.draws[k] for p in a], [p.x.draws[k] for p in b],
                  [p.y.draws[k] for p in b])
        if gk is not None and np.isfinite(gk).all():
            draws[k] = statistic(gk)
    kept = draws[np.isfinite(draws)]
    return Matched(float(statistic(g)), kept, overlap(xa, xb), B - kept.size)


def ratio(a: Estimate, b: Estimate) -> tuple[float, np.ndarray]:
    """A / B and its draws (the two sides' draws independent); NaN where B is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = a.draws / b.draws
        return (a.value / b.value if b.value != 0 else float("nan")), draws[np.isfinite(draws)]
