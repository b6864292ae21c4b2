"""Seed replicates of one configuration as one leaderboard row.

A *configuration* is what a run's stored config says apart from ``NOT_CONFIGURATION`` (its training seed and where
and how it was written), with ``init_from`` read as the configuration of the run it started from: ``dpo-seed1``
starts from ``sft-seed1`` and ``dpo-seed2`` from ``sft-seed2``, two runs by id but one configuration. The judged
checkpoints of one configuration at one step, with two or more distinct seeds, are its replicates (``find_groups``).

``aggregate`` turns each group into one row against the board's baseline. Its win rate is the mean over (seed, prompt)
cells of the cell's mean outcome (the board's order rule and tie policy): with every prompt judged once per seed, the
mean of the per-seed win rates. Its CI is ``evalharness.stats.two_level_mean``'s: seeds and prompts resampled
together (crossed, as every seed meets the same prompts), scaled to the crossed design's unbiased variance. The
held-out metrics (perplexity, agility, KL, margins, accuracy) are stored per checkpoint, not per prompt: a group's is
the mean over its seeds, its CI the same bootstrap over the seed values alone. LC win rates and BT ratings are fitted
per checkpoint and stay on the replicates' own rows (``--per-seed``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalharness import stats as floor_stats
from leaderboards.query import METRIC_NAMES

NOT_CONFIGURATION = ("seed", "name", "out", "log_every")
_DEPTH = 16  # init_from chains longer than any recipe: a cycle in a hand-edited store must not recurse forever


@dataclass
class Group:
    name: str
    members: dict[int, str]  # seed -> checkpoint key


def _config(raw: Any) -> dict[str, Any]:
    c = json.loads(raw) if isinstance(raw, str) and raw else raw
    return c if isinstance(c, dict) else {}


def identity(config: Any, parent: Any = None, depth: int = 0) -> str:
    """The configuration of a stored run config (a dict or its JSON): everything but ``NOT_CONFIGURATION``, with
    ``init_from`` replaced by ``parent(init_from)``'s identity where ``parent`` finds that run's config.

    >>> identity({"loss": "dpo", "seed": 1, "out": "a"}) == identity('{"loss": "dpo", "seed": 2, "out": "b"}')
    True
    """
    c = {k: v for k, v in _config(config).items() if k not in NOT_CONFIGURATION}
    init = c.get("init_from")
    found = parent(init) if parent is not None and init and depth < _DEPTH else None
    if found is not None:
        c["init_from"] = {"configuration": identity(found, parent, depth + 1)}
    return json.dumps(c, sort_keys=True, default=str)


def run_configs(con) -> dict[str, Any]:
    """run id -> its stored config, for ``identity``'s ``parent``."""
    return {rid: cfg for rid, cfg in con.execute("SELECT run_id, config FROM runs").fetchall()}


def checkpoint_runs(con, keys: list[str]) -> dict[str, tuple[Any, int]]:
    """checkpoint key -> (its run's stored config, its step), for the keys that are checkpoints of runs."""
    rows = con.execute("SELECT c.checkpoint_id, r.config, c.step FROM checkpoints c JOIN runs r USING (run_id) "
                       "JOIN (SELECT unnest(?) AS k) w ON w.k = c.checkpoint_id", [list(keys)]).fetchall()
    return {k: (cfg, step) for k, cfg, step in rows}


def find_groups(con, keys: list[str], labels: dict[str, str]) -> list[Group]:
    """The replicate groups among ``keys`` (two or more distinct seeds of one configuration at one step), in the
    order of their first member. A second checkpoint of a seed already in its group (a re-run) stays a row of its
    own."""
    configs = run_configs(con)
    by_config: dict[tuple[str, int], dict[int, str]] = {}
    for key, (cfg, step) in checkpoint_runs(con, keys).items():
        if not _config(cfg):  # a run stored without its config: nothing says what it is a replicate of
            continue
        members = by_config.setdefault((identity(cfg, configs.get), step), {})
        members.setdefault(int(_config(cfg).get("seed", 0)), key)
    order = {k: i for i, k in enumerate(keys)}
    groups = [dict(sorted(m.items())) for m in by_config.values() if len(m) >= 2]
    groups.sort(key=lambda m: min(order[k] for k in m.values()))
    return [Group(group_name([labels.get(k, k) for k in m.values()], list(m)), m) for m in groups]


def group_name(labels: list[str], seeds: list[int]) -> str:
    """The name the replicates answer to: their label without ``-seed<k>`` where each ends so (the experiment's
    naming), else the first label with the seeds counted.

    >>> group_name(["dpo-seed0", "dpo-seed1"], [0, 1]), group_name(["a", "b"], [0, 1])
    ('dpo', 'a (2 seeds)')
    >>> group_name(["dpo-seed0:200", "dpo-seed1:200"], [0, 1])  # a run's checkpoint: RUN:STEP
    'dpo:200'
    """
    return stem(labels, seeds) or f"{labels[0]} ({len(labels)} seeds)"


def stem(labels: list[str], seeds: list[int]) -> str | None:
    """The one name replicates labelled ``<name>-seed<k>`` (each with its own seed k; a checkpoint's ``:STEP`` or
    ``@STEP`` after it) share; None otherwise."""
    found = [re.fullmatch(rf"(.*)-seed{s}((?:[:@]\d+)?)", str(label)) for label, s in zip(labels, seeds)]
    names = {m.group(1) + m.group(2) for m in found if m}
    return names.pop() if len(names) == 1 and all(found) else None


def by_group_name(name: str, keys: list[str], labels: dict[str, str]) -> str | None:
    """The key of the lowest seed of the replicates labelled ``<name>-seed<k>`` (an experiment's names), or None.

    >>> by_group_name("dpo", ["x", "y", "z"], {"x": "dpo-seed2", "y": "dpo-seed1", "z": "dpo-beta0.1-seed0"})
    'y'
    """
    found = [(int(m.group(1)), k) for k in keys
             if (m := re.fullmatch(rf"{re.escape(name)}-seed(\d+)(?:[:@]\d+)?", labels.get(k, k)))]
    return min(found)[1] if found else None


def cell_outcomes(members: list[int], baseline: int, a, b, prompt, y, n_prompts: int) -> np.ndarray:
    """[seeds, prompts]: each member's mean outcome against ``baseline`` per prompt (``y`` is A's outcome of each
    kept pair), NaN where a prompt has no such pair."""
    out = np.full((len(members), n_prompts), np.nan)
    for row, m in enumerate(members):
        as_a, as_b = (a == m) & (b == baseline), (a == baseline) & (b == m)
        keep = as_a | as_b
        score = np.where(as_a, y, 1.0 - y)[keep]
        total = np.bincount(prompt[keep], score, minlength=n_prompts)
        count = np.bincount(prompt[keep], minlength=n_prompts)
        out[row] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def aggregate(rows: list[dict[str, Any]], groups: list[Group], models: list[str], baseline: int | None,
              a, b, prompt, y, n_prompts: int, n_resamples: int, seed: int, level: float,
              ) -> tuple[list[dict[str, Any]], list[str]]:
    """The board's rows with each group's replicates replaced by one row (``seeds`` = their count), and the notes
    that say how; unchanged without a baseline (a pooled win rate would count the replicates' games against each
    other)."""
    if baseline is not None:  # the baseline is its own row; its configuration's other seeds may still combine
        kept = [Group(g.name, {s: k for s, k in g.members.items() if k != models[baseline]}) for g in groups]
        groups = [g for g in kept if len(g.members) >= 2]
    if not groups:
        return rows, []
    if baseline is None:
        return rows, [f"{len(groups)} configuration(s) have seed replicates, shown one row each: replicates are "
                      "combined against a baseline only (give --baseline)"]
    by_key = {r["model"]: r for r in rows}
    index = {k: i for i, k in enumerate(models)}
    merged = {k for g in groups for k in g.members.values()}
    out = [r for r in rows if r["model"] not in merged]
    for i, g in enumerate(groups):
        keys = list(g.members.values())
        cells = cell_outcomes([index[k] for k in keys], baseline, a, b, prompt, y, n_prompts)
        out.append(_group_row(g, [by_key[k] for k in keys], cells, n_resamples, seed + i, level))
    pct = int(round(level * 100))
    notes = [f"seed replicates: {len(groups)} configuration(s) shown as one row each (seeds = replicates; their own "
             "rows with --per-seed); win rate = mean over (seed, prompt) of the mean outcome against the baseline; "
             f"{pct}% CI = two-level bootstrap resampling seeds and prompts together ({n_resamples} resamples), scaled "
             "to the crossed design's variance; " + ", ".join(METRIC_NAMES) + " = mean over seeds, CI by resampling "
             "the seeds (stored per checkpoint); LC and BT stay per replicate"]
    return out, notes


def _group_row(g: Group, members: list[dict[str, Any]], cells: np.ndarray, n_resamples: int, seed: int,
               level: float) -> dict[str, Any]:
    row = dict(members[0])
    keys = list(g.members.values())
    run = stem([m["run"] for m in members], list(g.members)) if all(m["run"] for m in members) else None
    row.update(model=g.name, label=g.name, seeds=len(keys), replicates=",".join(keys), run=run or members[0]["run"],
               lc_win_rate=None, lc_win_rate_se=None, lc_note=None, bt=None, bt_ci_low=None,
               bt_ci_high=None, bt_flag=None, win_rate_se=None, win_rate=None, win_rate_ci_low=None,
               win_rate_ci_high=None)
    counts = {f: sum(int(m[f] or 0) for m in members) for f in ("n", "wins", "ties", "losses")}
    row.update(counts)
    total = counts["wins"] + counts["ties"] + counts["losses"]
    for f, count in (("win_pct", "wins"), ("tie_pct", "ties"), ("loss_pct", "losses")):
        row[f] = 100.0 * counts[count] / total if total else None
    if not np.isnan(cells).all():
        mean, lo, hi = floor_stats.two_level_mean(cells, n_resamples, seed, level)
        row.update(win_rate=_pct(mean), win_rate_ci_low=_pct(lo), win_rate_ci_high=_pct(hi))
    for f in ("length", "tokens"):
        values = [m[f] for m in members if m[f] is not None]
        row[f] = float(np.mean(values)) if len(values) == len(members) else None
    row["samples"] = sum(m["samples"] or 0 for m in members) if all(m["samples"] is not None for m in members) else None
    for name in METRIC_NAMES:
        values = [m[name] for m in members]
        row.update({name: None, f"{name}_ci_low": None, f"{name}_ci_high": None, f"{name}_n": None})
        if all(v is not None for v in values):
            mean, lo, hi = floor_stats.two_level_mean(np.array(values, dtype=np.float64), n_resamples, seed, level)
            ns = {m[f"{name}_n"] for m in members}  # one held-out set read by every seed: its size, not a sum
            row.update({name: mean, f"{name}_ci_low": _finite(lo), f"{name}_ci_high": _finite(hi),
                        f"{name}_n": ns.pop() if len(ns) == 1 else None})
    return row


def _pct(x: float) -> float | None:
    return float(100.0 * x) if np.isfinite(x) else None


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
