"""The leaderboard: one row per model for one judge, its win rates with CIs beside metrics and provenance.

``build_leaderboard(store, config)`` reads the store (``query``), computes every statistic (``stats.board_stats``)
and returns a ``Leaderboard`` of flat, JSON-ready rows (``FIELDS``) that every renderer shows. Percentages are in
0-100. Conventions (also written into ``meta["notes"]``):

- A pair's verdict combines its stored orders (both agree -> that side, otherwise a tie; a single valid order decides
  alone; unparsed/failed orders are left out and counted).
- ``win_rate`` = mean per-pair outcome (wins + ties/2)/n under the tie policy; ``win_rate_se`` = sample SD (ddof 1) of
  the per-pair outcomes over sqrt(n), AlpacaEval's standard error; the CI is a percentile bootstrap resampling
  prompts.
- ``bt`` = Bradley-Terry rating on the Elo scale (400 * log10 strength + 1000), over every pair of the judge; the
  baseline is anchored at exactly 1000, or with no baseline the mean over models is 1000.
- ``lc_win_rate`` = length-controlled win rate (``stats.lc_win_rate``), lengths in characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leaderboards import query, stats
from leaderboards.query import METRIC_NAMES, LeaderboardError

FIELDS = (
    ["rank", "model", "label", "baseline", "n", "wins", "ties", "losses", "win_pct", "tie_pct", "loss_pct",
     "win_rate", "win_rate_se", "win_rate_ci_low", "win_rate_ci_high", "lc_win_rate", "lc_win_rate_se",
     "bt", "bt_ci_low", "bt_ci_high", "length", "tokens", "samples"]
    + [f"{m}{s}" for m in METRIC_NAMES for s in ("", "_ci_low", "_ci_high", "_n")]
    + ["run", "step", "loss", "beta", "params", "base_model", "code_version", "judge", "judge_version"]
)

TEXT_FIELDS = frozenset({"model", "label", "run", "loss", "params", "base_model", "code_version", "judge",
                         "judge_version"})


@dataclass(frozen=True)
class LeaderboardConfig:
    judge: str | None = None  # JUDGE or JUDGE@VERSION; None: the only judge in the store
    baseline: str | None = None  # a checkpoint key, label or key prefix
    prompt_set: str | None = None
    ties: str = "tie"
    n_resamples: int = 1000  # bootstrap resamples of prompts
    seed: int = 0
    level: float = 0.95

    def __post_init__(self):
        if self.ties not in stats.TIE_POLICIES:
            raise LeaderboardError(f"--ties must be one of {', '.join(stats.TIE_POLICIES)}, got {self.ties!r}")
        if self.n_resamples < 0:
            raise LeaderboardError(f"--bootstrap must be >= 0, got {self.n_resamples}")
        if not 0.0 < self.level < 1.0:
            raise LeaderboardError(f"the CI level must be in (0, 1), got {self.level}")


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


def build_leaderboard(store: str | Path, cfg: LeaderboardConfig) -> Leaderboard:
    from evalharness.store import code_version

    with query.read_store(store) as con:
        variants = query.judge_variants(con, cfg.prompt_set)
        if not variants and cfg.judge is None and cfg.prompt_set is None:  # nothing judged yet: metrics only
            metrics, labels = query.load_metrics(con)
            keys = sorted(metrics)
            if not keys:
                raise LeaderboardError("the store holds no judgments and no metrics yet "
                                       "(run `evalharness judge`, `evalharness eval` or `evalharness import`)")
            info = {k: query.ModelInfo(k, labels.get(k, k)) for k in keys}
            return metrics_only(keys, info, metrics, query.load_provenance(con, keys), code_version())
        variant = query.select_judge(variants, cfg.judge, cfg.prompt_set)
        pairs = query.load_pairs(con, variant, cfg.prompt_set)
        if not len(pairs.a):
            raise LeaderboardError(f"judge {variant.name} has no pair with a valid verdict"
                                   + (f" on prompt set {cfg.prompt_set!r}" if cfg.prompt_set else ""))
        info = query.model_info(con, variant, cfg.prompt_set, pairs.models)
        metrics, _ = query.load_metrics(con, pairs.models)
        provenance = query.load_provenance(con, pairs.models)
    return board_from_pairs(pairs, info, metrics, provenance, cfg, variant, code_version())


def default_baseline(pairs: query.PairTable) -> int | None:
    """The runner's baseline mode leaves one model as B in every pair and never as A: that model is the baseline."""
    bs = np.unique(pairs.b)
    if len(bs) == 1 and not np.any(pairs.a == bs[0]):
        return int(bs[0])
    return None


def board_from_pairs(pairs: query.PairTable, info: dict[str, query.ModelInfo],
                     metrics: dict[str, dict[str, query.MetricValue]], provenance: dict[str, query.Provenance],
                     cfg: LeaderboardConfig, variant: query.JudgeVariant, version: str = "") -> Leaderboard:
    """Compute the statistics over ``pairs`` and lay out one flat row per model, best first."""
    labels = {k: i.label for k, i in info.items()}
    if cfg.baseline is not None:
        baseline = pairs.models.index(query.resolve_model(cfg.baseline, pairs.models, labels))
    else:
        baseline = default_baseline(pairs)
    s = stats.board_stats(pairs.a, pairs.b, pairs.prompt, pairs.verdict, pairs.p_a, pairs.len_a, pairs.len_b,
                          len(pairs.models), pairs.n_prompts, baseline, cfg.ties, cfg.n_resamples, cfg.seed,
                          cfg.level)
    rows = []
    for i, key in enumerate(pairs.models):
        row = _base_row(key, info[key], metrics.get(key, {}), provenance.get(key))
        row.update(baseline=i == baseline, judge=variant.judge, judge_version=variant.version)
        if i != baseline:
            total = int(s.wins[i] + s.ties[i] + s.losses[i])
            row.update(n=int(s.n[i]), wins=int(s.wins[i]), ties=int(s.ties[i]), losses=int(s.losses[i]))
            if total:
                row.update(win_pct=100.0 * int(s.wins[i]) / total, tie_pct=100.0 * int(s.ties[i]) / total,
                           loss_pct=100.0 * int(s.losses[i]) / total)
            row.update(win_rate=_pct(s.win_rate[i]), win_rate_se=_pct(s.se[i]), win_rate_ci_low=_pct(s.ci_low[i]),
                       win_rate_ci_high=_pct(s.ci_high[i]), lc_win_rate=_pct(s.lc[i]), lc_win_rate_se=_pct(s.lc_se[i]))
        row.update(bt=_num(s.bt[i]), bt_ci_low=_num(s.bt_low[i]), bt_ci_high=_num(s.bt_high[i]))
        rows.append(row)
    rows = _ranked(rows)
    meta = {
        "judge": variant.judge, "judge_version": variant.version, "template": variant.template,
        "baseline": pairs.models[baseline] if baseline is not None else None,
        "baseline_label": labels.get(pairs.models[baseline]) if baseline is not None else None,
        "prompt_set": cfg.prompt_set, "ties": cfg.ties, "bootstrap": cfg.n_resamples, "seed": cfg.seed,
        "level": cfg.level, "pairs": int(len(pairs.a)), "prompts": pairs.n_prompts, "orders": pairs.orders,
        "invalid_orders": pairs.invalid_orders, "unusable_pairs": pairs.unusable_pairs,
        "single_order_pairs": pairs.single_order_pairs, "code_version": version,
        "notes": _notes(cfg, baseline is not None),
    }
    return Leaderboard(rows, meta)


def metrics_only(keys: list[str], info: dict[str, query.ModelInfo], metrics, provenance, version: str) -> Leaderboard:
    rows = _ranked([_base_row(k, info[k], metrics.get(k, {}), provenance.get(k)) for k in keys])
    return Leaderboard(rows, {"judge": None, "code_version": version,
                              "notes": ["no judgments in the store: metrics and provenance only"]})


def _base_row(key: str, info: query.ModelInfo, metrics: dict[str, query.MetricValue],
              prov: query.Provenance | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(model=key, label=info.label, baseline=False, length=_num(info.length), tokens=_num(info.tokens),
               samples=info.samples)
    for name, m in metrics.items():
        row.update({name: _num(m.value), f"{name}_ci_low": _num(m.ci_low), f"{name}_ci_high": _num(m.ci_high),
                    f"{name}_n": m.n})
    if prov is not None:
        row.update(run=prov.run, step=prov.step, loss=prov.loss, beta=prov.beta, base_model=prov.base_model,
                   code_version=prov.code_version,
                   params=json.dumps(prov.params, sort_keys=True, separators=(",", ":")) if prov.params else None)
    return row


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first: by win rate, then Bradley-Terry rating; the baseline and unrated models after the rated ones."""
    def key(r):
        wr, bt = r.get("win_rate"), r.get("bt")
        return (wr is None, -(wr or 0.0), bt is None, -(bt or 0.0), r["label"] or "", r["model"])

    rows = sorted(rows, key=key)
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    return rows


def _notes(cfg: LeaderboardConfig, has_baseline: bool) -> list[str]:
    pct = int(round(cfg.level * 100))
    return [
        "verdict per pair: both orders agree -> that side wins; they disagree or either says tie -> tie; "
        "a single valid order decides alone; unparsed/failed orders are left out",
        f"ties: {cfg.ties}; win rate = (wins + ties/2)/n; SE = sample SD of per-pair outcomes / sqrt(n); "
        f"{pct}% CI = percentile bootstrap over prompts ({cfg.n_resamples} resamples, seed {cfg.seed})",
        "BT = Bradley-Terry MLE over all pairs, Elo scale 400*log10 + 1000, "
        + ("the baseline fixed at 1000" if has_baseline else "the mean over models fixed at 1000"),
        "LC = length-controlled win rate: logistic fit on tanh(normalised length difference), "
        "predicted at equal length; length in characters",
    ]


def _pct(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(100.0 * x)


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# ------------------------------------------------------------------------------------------------ rendering


def leaderboard_table(board: Leaderboard):
    """The leaderboard as a renderable ``Table``: display columns for humans, every field for CSV/JSON."""
    from leaderboards.render import Column, Table, num, sig, text, with_ci

    level = int(round(100 * board.meta.get("level", 0.95)))

    def wtl(r):
        if r["win_pct"] is None:
            return ""
        return f"{r['win_pct']:.1f}/{r['tie_pct']:.1f}/{r['loss_pct']:.1f}"

    def win_rate(r):
        return num(r["win_rate"]) + (f" ± {num(r['win_rate_se'])}" if r["win_rate_se"] is not None else "")

    def ci(r):
        lo, hi = r["win_rate_ci_low"], r["win_rate_ci_high"]
        return f"[{num(lo, 1)}, {num(hi, 1)}]" if lo is not None and hi is not None else ""

    def metric(name):
        return lambda r: with_ci(sig(r[name]), sig(r[f"{name}_ci_low"]), sig(r[f"{name}_ci_high"]))

    def run(r):
        return f"{r['run']}:{r['step']}" if r["run"] is not None else ""

    columns = [
        Column("#", lambda r: text(r["rank"]), "rank"),
        Column("model", lambda r: text(r["label"]) + (" (baseline)" if r["baseline"] else ""), "label", "left"),
        Column("n", lambda r: text(r["n"]), "n"),
        Column("W/T/L %", wtl, "win_pct"),
        Column("win rate", win_rate, "win_rate"),
        Column(f"{level}% CI", ci, "win_rate_ci_low"),
        Column("LC win rate", lambda r: num(r["lc_win_rate"]), "lc_win_rate"),
        Column("BT", lambda r: with_ci(num(r["bt"], 0), num(r["bt_ci_low"], 0), num(r["bt_ci_high"], 0)), "bt"),
        Column("length", lambda r: num(r["length"], 0), "length"),
        Column("tokens", lambda r: num(r["tokens"], 1), "tokens"),
        *[Column(name, metric(name), name) for name in METRIC_NAMES],
        Column("loss", lambda r: text(r["loss"]), "loss", "left"),
        Column("β", lambda r: sig(r["beta"]), "beta"),
        Column("run", run, "run", "left"),
        Column("base model", lambda r: text(r["base_model"]), "base_model", "left"),
        Column("code", lambda r: text(r["code_version"]), "code_version", "left"),
    ]
    meta = {k: v for k, v in board.meta.items() if k not in ("notes", "baseline", "level")}
    title = "Leaderboard"
    if board.meta.get("judge"):
        title += f": judge {board.meta['judge']}@{board.meta['judge_version']}"
    if board.meta.get("baseline_label"):
        title += f" vs {board.meta['baseline_label']}"
    if board.meta.get("prompt_set"):
        title += f" on {board.meta['prompt_set']}"
    return Table(title, list(FIELDS), board.rows, columns, meta, list(board.meta.get("notes", [])))
