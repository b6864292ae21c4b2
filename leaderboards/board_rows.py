"""A leaderboard row: its fields (``FIELDS``, every renderer's columns), how a model's row is laid out from its
info, metrics and provenance, and the ranking. Percentages are in 0-100; a missing or non-finite number is None."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from leaderboards import query, ratings, selection
from leaderboards.query import METRIC_NAMES

FIELDS = (
    ["rank", "model", "label", "baseline", "n", "wins", "ties", "losses", "win_pct", "tie_pct", "loss_pct",
     "win_rate", "win_rate_se", "win_rate_ci_low", "win_rate_ci_high", "lc_win_rate", "lc_win_rate_se", "lc_note",
     "bt", "bt_ci_low", "bt_ci_high", "bt_flag", "length", "tokens", "samples", "seeds", "replicates", "score",
     "score_ci_low", "score_ci_high", "score_n"]
    + [f"{m}{s}" for m in METRIC_NAMES for s in ("", "_ci_low", "_ci_high", "_n")]
    + ["run", "step", "loss", "beta", "params", "base_model", "code_version", "judge", "judge_version",
       "order_rule", "tie_policy", "lc_method"]
    + list(selection.ROW_FIELDS)
)

TEXT_FIELDS = frozenset({"model", "label", "run", "loss", "params", "base_model", "code_version", "judge",
                         "judge_version", "lc_note", "bt_flag", "order_rule", "tie_policy", "lc_method",
                         "replicates"}
                        | selection.TEXT_ROW_FIELDS)

# A BT interval wider than this spans from a 10:1 underdog to a 10:1 favourite against the same opponent (400
# points = 10:1 odds each way): the data do not place the model.
BT_WIDE_CI = 800.0
PERFECT = "perfect record"
WIDE = "wide CI"


def score_fields(scores: ratings.Scores | None, key: str) -> dict[str, Any]:
    if scores is None or key not in scores.mean:
        return {}
    return {"score": finite(scores.mean[key]), "score_ci_low": finite(scores.low[key]),
            "score_ci_high": finite(scores.high[key]), "score_n": scores.n[key]}


def evaluation_fields(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {k: evaluation.get(k) for k in selection.ROW_FIELDS if k != "template"}


def bt_flag(perfect: bool, low: float, high: float) -> str | None:
    flags = [PERFECT] if perfect else []
    if np.isfinite(low) and np.isfinite(high) and high - low > BT_WIDE_CI:
        flags.append(WIDE)
    return "; ".join(flags) or None


def base_row(key: str, info: query.ModelInfo, metrics: dict[str, query.MetricValue],
              prov: query.Provenance | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(model=key, label=info.label, baseline=False, length=finite(info.length), tokens=finite(info.tokens),
               samples=info.samples, seeds=1)
    for name, m in metrics.items():
        row.update({name: finite(m.value), f"{name}_ci_low": finite(m.ci_low), f"{name}_ci_high": finite(m.ci_high),
                    f"{name}_n": m.n})
    if prov is not None:
        row.update(run=prov.run, step=prov.step, loss=prov.loss, beta=prov.beta, base_model=prov.base_model,
                   code_version=prov.code_version,
                   params=json.dumps(prov.params, sort_keys=True, separators=(",", ":")) if prov.params else None)
    return row


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first: by win rate, then Bradley-Terry rating; the baseline and unrated models after the rated ones."""
    def key(r):
        wr, bt, score = r.get("win_rate"), r.get("bt"), r.get("score")
        return (wr is None, -(wr or 0.0), bt is None, -(bt or 0.0), score is None, -(score or 0.0), r["label"] or "",
                r["model"])

    rows = sorted(rows, key=key)
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    return rows


def pct(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(100.0 * x)


def finite(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


