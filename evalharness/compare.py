"""Two configurations compared quantity by quantity: win rate and gold reward paired over shared prompts and seeds,
KL, perplexity and agility per checkpoint, each difference with its CI, p-value and minimum detectable effect.

A *configuration* is a set of runs whose stored configs are equal apart from ``seed`` (and ``name``, ``out``,
``log_every``, which say where and how a run was written), ``init_from`` read as its run's configuration
(``leaderboards.replicates``, which the board groups by too): its seed replicates. A name on the command line picks
one judged checkpoint (key, label or unique prefix, as ``--baseline`` does) or an experiment's replicated run by its
own name (``dpo`` for ``dpo-seed0``, ``dpo-seed1``…); every other run of its configuration joins with its checkpoint at
the same step. Both sides are rated against one baseline under one evaluation of one judge
(``leaderboards.selection``; several candidates are refused with the list).

Per quantity:

- win rate: per (seed, prompt), the mean outcome against the baseline (win 1, tie 0.5, loss 0; both orders combined
  by the ``agree`` rule); gold reward: per (seed, prompt), the mean oracle score of the side's samples of the
  evaluation. Seeds are paired when both sides hold the same seeds (row s of each is seed s), else each side's seeds
  are resampled on their own; prompts are those both sides measured. ``stats.paired_difference`` gives the rest.
- KL, perplexity, agility are stored per checkpoint, not per prompt. With two or more seeds on each side, the
  difference is that of the seed means and its CI resamples seeds; with one seed a side, the interval combines the two
  stored standard errors as independent (conservative: both sides read the same held-out pairs and prompts).

The p-values of the quantities compared are Holm-adjusted together; a difference is called (``A higher`` / ``B
higher``) only where the adjusted p is at most alpha, "inconclusive" otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from evalharness import stats
from leaderboards import query, replicates, selection
from leaderboards.query import LeaderboardError

QUANTITIES = ("win_rate", "gold_reward", "kl", "perplexity", "agility")
ORACLE = "oracle"


@dataclass
class Side:
    name: str
    members: dict[int, str]  # seed -> checkpoint key


@dataclass
class Row:
    quantity: str
    a: float | None = None
    b: float | None = None
    diff: stats.Difference | None = None
    p_adjusted: float = float("nan")
    call: str = "inconclusive"
    note: str = ""


@dataclass
class Comparison:
    a: Side
    b: Side
    baseline: str
    evaluation: str
    rows: list[Row] = field(default_factory=list)
    level: float = 0.95
    alpha: float = 0.05


def compare(store: str | Path, a: str, b: str, judge: str | None = None, baseline: str | None = None,
            prompts: str | None = None, template: str | None = None, turn: str | None = None,
            temperature: str | None = None, sampling: str | None = None, held_out: str | None = None,
            resamples: int = 2000, seed: int = 0, level: float = 0.95, alpha: float = 0.05) -> Comparison:
    with query.read_store(store) as con:
        variant = query.select_judge(query.judge_variants(con, prompts), judge, prompts, template)
        key = selection.choose_key(con, variant, prompts, selection.parse_turn(turn),
                                   selection.parse_temperature(temperature) if temperature is not None else None,
                                   sampling)
        pairs = query.load_pairs(con, variant, key=key)
        labels = {k: i.label for k, i in query.model_info(con, variant, None, pairs.models, key).items()}
        side_a, side_b = (_side(con, n, pairs.models, labels) for n in (a, b))
        if set(side_a.members.values()) & set(side_b.members.values()):
            raise LeaderboardError(f"{a!r} and {b!r} name the same configuration")
        base = _baseline(pairs, side_a, side_b, baseline, labels)
        out = Comparison(side_a, side_b, labels.get(base, base),
                         f"judge {variant.name}" + selection.title_suffix(selection.board_meta(key, [], None, {})),
                         level=level, alpha=alpha)
        out.rows.append(_per_prompt("win_rate", _win_rates(pairs, side_a, base), _win_rates(pairs, side_b, base),
                                    resamples, seed, level))
        gold_a, gold_b = _gold(con, key, side_a), _gold(con, key, side_b)
        out.rows.append(_per_prompt("gold_reward", gold_a, gold_b, resamples, seed + 1, level) if gold_a and gold_b
                        else Row("gold_reward", note=f"no {ORACLE} scores of these samples"))
        keys = list(side_a.members.values()) + list(side_b.members.values())
        records = query.metric_records(con, keys)
        chosen = selection.choose_held_out(records, held_out)
        metrics, _ = query.load_metrics(con, keys, selection.accept((key.prompt_set, key.sampling), chosen), records)
    for i, name in enumerate(("kl", "perplexity", "agility")):
        out.rows.append(_per_checkpoint(name, metrics, side_a, side_b, resamples, seed + 2 + i, level))
    adjusted = stats.holm([r.diff.p_value if r.diff else math.nan for r in out.rows])
    for r, p in zip(out.rows, adjusted):
        r.p_adjusted = float(p)
        if r.diff is not None and p <= alpha and r.diff.estimate != 0:
            r.call = "A higher" if r.diff.estimate > 0 else "B higher"
    return out


def _side(con, name: str, keys: list[str], labels: dict[str, str]) -> Side:
    """The configuration of the checkpoint ``name`` picks: its run's seed replicates judged at the same step."""
    try:
        picked = query.resolve_label(name, keys, labels)
    except LeaderboardError:
        picked = replicates.by_group_name(name, keys, labels)
        if picked is None:
            raise
    row = con.execute("SELECT r.config, c.step FROM checkpoints c JOIN runs r USING (run_id) "
                      "WHERE c.checkpoint_id = ?", [picked]).fetchone()
    if row is None:  # a plain model, not a run: one replicate
        return Side(labels.get(picked, name), {0: picked})
    configs = replicates.run_configs(con)
    ident, step = replicates.identity(row[0], configs.get), row[1]
    members: dict[int, str] = {}
    for ck, config in con.execute("SELECT c.checkpoint_id, r.config FROM checkpoints c JOIN runs r USING (run_id) "
                                  "JOIN (SELECT unnest(?) AS k) w ON w.k = c.checkpoint_id WHERE c.step = ?",
                                  [keys, step]).fetchall():
        c = json.loads(config) if isinstance(config, str) and config else (config or {})
        if replicates.identity(c, configs.get) == ident:
            s = int(c.get("seed", 0))
            if s in members and members[s] != ck and ck != picked:
                continue  # two runs of one config and seed (re-runs): the named one, else the first
            members[s] = ck
    members = dict(sorted(members.items()))
    shared = replicates.stem([labels.get(k, k) for k in members.values()], list(members)) if len(members) > 1 else None
    return Side(shared or labels.get(picked, name), members)


def _baseline(pairs: query.PairTable, a: Side, b: Side, spec: str | None, labels: dict[str, str]) -> str:
    idx = {k: i for i, k in enumerate(pairs.models)}
    opponents = []
    for side in (a, b):
        mine = {idx[k] for k in side.members.values()}
        found = set(pairs.b[np.isin(pairs.a, list(mine))]) | set(pairs.a[np.isin(pairs.b, list(mine))])
        opponents.append({pairs.models[i] for i in found} - set(a.members.values()) - set(b.members.values()))
    common = opponents[0] & opponents[1]
    if spec is not None:
        base = query.resolve_label(spec, pairs.models, labels)
        if base not in common:
            raise LeaderboardError(f"baseline {spec!r} was not judged against both {a.name} and {b.name}")
        return base
    if len(common) != 1:
        names = ", ".join(sorted(labels.get(k, k) for k in common)) or "none"
        raise LeaderboardError(f"{a.name} and {b.name} share {len(common)} baselines under this judge ({names}); "
                               + ("choose one with --baseline" if common else "judge both against one model"))
    return common.pop()


def _win_rates(pairs: query.PairTable, side: Side, base: str) -> dict[int, np.ndarray]:
    """seed -> per-prompt mean outcome against ``base`` [n_prompts] (NaN: not judged)."""
    ib = pairs.models.index(base)
    out = {}
    for s, ck in side.members.items():
        im = pairs.models.index(ck)
        as_a, as_b = (pairs.a == im) & (pairs.b == ib), (pairs.a == ib) & (pairs.b == im)
        score = np.where(as_a, (pairs.verdict + 1) / 2.0, (1 - pairs.verdict) / 2.0)
        keep = as_a | as_b
        total = np.bincount(pairs.prompt[keep], score[keep], minlength=pairs.n_prompts)
        count = np.bincount(pairs.prompt[keep], minlength=pairs.n_prompts)
        with np.errstate(invalid="ignore"):
            out[s] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _gold(con, key: query.EvalKey, side: Side) -> dict[int, dict[str, float]]:
    """seed -> prompt id -> mean oracle score of the side's samples of the evaluation (empty: none scored)."""
    settings = list(key.raw) if key.sampling else list(key.raw) + list(key.unrecorded)
    out = {}
    for s, ck in side.members.items():
        # A score is stored once per (prompt, text) under the generation that was scored first; a sample of the
        # same text at turn 1 (the same conversation) has that score too, whichever checkpoint drew it.
        rows = con.execute(
            "SELECT g.prompt_id, avg(sc.score) FROM generations g JOIN generations g0 ON g0.prompt_id = g.prompt_id "
            "AND g0.turn = g.turn AND g0.text = g.text AND (g.turn = 1 OR g0.generation_id = g.generation_id) "
            "JOIN scores sc ON sc.generation_id = g0.generation_id "
            "JOIN prompts p ON p.prompt_id = g.prompt_id WHERE sc.judge = ? AND g.checkpoint = ? AND p.prompt_set = ? "
            "AND list_contains(?, g.turn) AND list_contains(?, coalesce(CAST(g.sampling AS VARCHAR), '')) "
            "GROUP BY g.prompt_id", [ORACLE, ck, key.prompt_set, list(key.turns), settings]).fetchall()
        if rows:
            out[s] = {pid: float(v) for pid, v in rows}
    return out if len(out) == len(side.members) else {}


def _matrices(a: dict[int, Any], b: dict[int, Any]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Rows by seed (paired where both sides hold the same seeds), columns the prompts both sides measured."""
    if isinstance(next(iter(a.values())), dict):  # prompt id -> value
        ids = sorted(set().union(*a.values()) & set().union(*b.values()))
        a = {s: np.array([v.get(p, np.nan) for p in ids]) for s, v in a.items()}
        b = {s: np.array([v.get(p, np.nan) for p in ids]) for s, v in b.items()}
    ma, mb = np.stack([a[s] for s in sorted(a)]), np.stack([b[s] for s in sorted(b)])
    shared = ~np.isnan(ma).all(0) & ~np.isnan(mb).all(0)
    return ma[:, shared], mb[:, shared], sorted(a) == sorted(b)


def _per_prompt(name: str, a: dict, b: dict, resamples: int, seed: int, level: float) -> Row:
    ma, mb, paired = _matrices(a, b)
    if ma.shape[1] == 0:
        return Row(name, note="no prompt measured on both sides")
    d = stats.paired_difference(ma, mb, paired, resamples, seed, level)
    return Row(name, float(np.nanmean(ma)), float(np.nanmean(mb)), d)


def _per_checkpoint(name: str, metrics: dict, a: Side, b: Side, resamples: int, seed: int, level: float) -> Row:
    va = [metrics.get(ck, {}).get(name) for ck in a.members.values()]
    vb = [metrics.get(ck, {}).get(name) for ck in b.members.values()]
    if any(v is None or v.value is None for v in va + vb):
        return Row(name, note="not stored for every checkpoint (run `evalharness eval`)")
    xa, xb = np.array([v.value for v in va]), np.array([v.value for v in vb])
    if len(xa) >= 2 and len(xb) >= 2:
        paired = sorted(a.members) == sorted(b.members)
        return Row(name, xa.mean(), xb.mean(), stats.paired_difference(xa[:, None], xb[:, None], paired, resamples,
                                                                        seed, level))
    se = math.sqrt(sum(_se(v, level) ** 2 for v in va[:1] + vb[:1]))
    est = float(xa.mean() - xb.mean())
    if not math.isfinite(se):
        return Row(name, xa.mean(), xb.mean(), note="no standard error stored")
    z = NormalDist()
    half = z.inv_cdf(0.5 + level / 2) * se
    p = 2 * (1 - z.cdf(abs(est) / se)) if se > 0 else (1.0 if est == 0 else 0.0)
    return Row(name, xa.mean(), xb.mean(), stats.Difference(est, est - half, est + half, p, se,
                                                            stats.min_detectable_effect(se, 1), 0,
                                                            (len(xa), len(xb)), False, level),
               note="stored SEs, one seed a side")


def _se(v: query.MetricValue, level: float) -> float:
    if v.se is not None and math.isfinite(v.se):
        return float(v.se)
    if v.ci_low is not None and v.ci_high is not None:  # a percentile interval read as a normal one
        return float(v.ci_high - v.ci_low) / (2 * NormalDist().inv_cdf(0.5 + level / 2))
    return float("nan")


def render(c: Comparison) -> str:
    pct = int(round(c.level * 100))
    seeds = lambda s: f"{len(s.members)} seed" + ("s" if len(s.members) != 1 else "")  # noqa: E731
    lines = [f"A = {c.a.name} ({seeds(c.a)}), B = {c.b.name} ({seeds(c.b)}); against {c.baseline}; {c.evaluation}",
             f"{'quantity':<12} {'A':>9} {'B':>9} {'A - B':>9} {f'{pct}% CI':>21} {'p':>7} {'p Holm':>7} "
             f"{'MDE':>8}  result"]
    for r in c.rows:
        if r.diff is None:
            lines.append(f"{r.quantity:<12} {_f(r.a):>9} {_f(r.b):>9} {'':>9} {'':>21} {'':>7} {'':>7} {'':>8}  "
                         f"inconclusive: {r.note}")
            continue
        d = r.diff
        ci = f"[{_f(d.ci_low, True)}, {_f(d.ci_high, True)}]"
        lines.append(f"{r.quantity:<12} {_f(r.a):>9} {_f(r.b):>9} {_f(d.estimate, True):>9} {ci:>21} "
                     f"{d.p_value:>7.3f} {r.p_adjusted:>7.3f} {_f(d.mde):>8}  {r.call}"
                     + (f" ({r.note})" if r.note else ""))
    lines.append(f"paired over shared prompts (and seeds where both sides hold the same); {pct}% percentile CIs of "
                 f"the two-level bootstrap; p two-sided, Holm over the {sum(r.diff is not None for r in c.rows)} "
                 f"quantities compared; a call needs p Holm <= {c.alpha}; MDE at alpha 0.05, power 0.8")
    return "\n".join(lines) + "\n"


def _f(x: float | None, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:+.4g}" if sign else f"{x:.4g}"
