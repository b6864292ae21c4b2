"""The numbers behind the plots: per-point intervals on both axes, one series per method, seed bands of training
curves. Pure functions over leaderboard rows, so the data is tested, not the pixels.

- A *point* is one board row (a checkpoint, or a configuration's seed replicates as the board aggregates them): its x
  and y with their intervals from the row's own CI fields (``<quantity>_ci_low`` / ``_ci_high``: the board's
  bootstrap, two-level where the row holds several seeds).
- A *method* is the row's loss; its points are its β grid, ordered by β (rows without β by x): one line per method.
- The reward of a row (``reward_intervals``) is the mean pointwise score of its samples under the board's judge,
  with the interval of the two-level bootstrap of seeds (its replicates) and prompts.
- Training curves (``curve_bands``): runs named ``<name>-seed<k>`` are one curve: per step the mean over the seeds
  that logged it, and the band from the lowest to the highest seed's value (with three seeds, the whole spread).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from leaderboards.frontier import mean_estimate

SEED = re.compile(r"^(?P<name>.+)-seed(?P<seed>\d+)$")


def members(row: dict[str, Any]) -> list[str]:
    """The checkpoints a row stands for: its seed replicates, or itself."""
    return str(row["replicates"]).split(",") if row.get("replicates") else [row["model"]]


def method(row: dict[str, Any]) -> str:
    return str(row.get("loss") or row.get("label") or row.get("model"))


def point(row: dict[str, Any], x: str, y: str) -> dict[str, Any] | None:
    """The row as a point with both intervals (None: it lacks x or y). A missing CI is the value itself (no bar)."""
    if row.get(x) is None or row.get(y) is None:
        return None
    out = {"method": method(row), "name": row.get("label") or row.get("model"), "beta": row.get("beta"),
           "seeds": row.get("seeds") or 1}
    for axis, q in (("x", x), ("y", y)):
        v = float(row[q])
        lo, hi = row.get(f"{q}_ci_low"), row.get(f"{q}_ci_high")
        out.update({axis: v, f"{axis}_lo": float(lo) if lo is not None else v,
                    f"{axis}_hi": float(hi) if hi is not None else v})
    return out


def series(rows: Iterable[dict[str, Any]], x: str, y: str) -> dict[str, list[dict[str, Any]]]:
    """Method -> its points, ordered by β (then x): the line drawn across its β grid."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        p = point(r, x, y)
        if p is not None:
            out.setdefault(p["method"], []).append(p)
    for pts in out.values():
        pts.sort(key=lambda p: (p["beta"] is None, p["beta"] if p["beta"] is not None else 0.0, p["x"]))
    return dict(sorted(out.items()))


def reward_intervals(scores: dict[str, dict[str, float]], rows: Iterable[dict[str, Any]], resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> list[dict[str, Any]]:
    """``rows`` with ``reward``, ``reward_ci_low`` and ``reward_ci_high``: ``scores`` is checkpoint -> prompt id ->
    mean score of its samples; a row's replicates are the seeds (rows of the matrix), the prompts its columns."""
    out = []
    for r in rows:
        have = [scores[k] for k in members(r) if k in scores]
        if not have:
            out.append({**r, "reward": None, "reward_ci_low": None, "reward_ci_high": None})
            continue
        ids = sorted(set().union(*have))
        m = np.array([[s.get(i, np.nan) for i in ids] for s in have])
        e = mean_estimate(m, resamples, seed)
        lo, hi = e.ci(level) if m.size > 1 else (e.value, e.value)
        out.append({**r, "reward": e.value, "reward_ci_low": lo, "reward_ci_high": hi})
    return out


def curve_bands(curves: Iterable[tuple[str, int, str, float]]) -> dict[str, dict[str, list[tuple]]]:
    """Metric -> curve (runs ``<name>-seed<k>`` together) -> [(step, mean, low, high, seeds)] by step."""
    cells: dict[str, dict[str, dict[int, list[float]]]] = {}
    for run, step, name, value in curves:
        m = SEED.match(run)
        cells.setdefault(name, {}).setdefault(m["name"] if m else run, {}).setdefault(int(step), []).append(
            float(value))
    return {name: {curve: [(s, float(np.mean(v)), min(v), max(v), len(v)) for s, v in sorted(steps.items())]
                   for curve, steps in sorted(by_curve.items())}
            for name, by_curve in sorted(cells.items())}
