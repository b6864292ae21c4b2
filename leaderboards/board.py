"""The leaderboard: one row per model for one judge, its win rates with CIs beside metrics and provenance.

``build_leaderboard(store, config)`` reads the store (``query``), computes every statistic (``stats.board_stats``)
and returns a ``Leaderboard`` of flat, JSON-ready rows (``FIELDS``) that every renderer shows. Percentages are in
0-100. Conventions (also written into ``meta["notes"]``):

- A pair's verdict combines its stored orders by an order rule (``stats.apply_order_rule``; default ``agree``: both
  agree -> that side, otherwise a tie; a single valid order decides alone; unparsed/failed orders are left out and
  counted).
- ``win_rate`` = mean per-pair outcome under the tie policy (the judge's own by default: ``average`` for imported
  AlpacaEval annotators, else ``tie``); ``win_rate_se`` = sample SD (ddof 1) of the per-pair outcomes over sqrt(n),
  AlpacaEval's standard error; the CI is a percentile bootstrap resampling prompts.
- ``bt`` = Bradley-Terry rating on the Elo scale (400 * log10 strength + 1000), over every pair of the judge; the
  baseline is anchored at exactly 1000, or with no baseline the mean over models is 1000. ``bt_flag`` marks a
  perfect record (no finite rating) and a CI wider than ``BT_WIDE_CI`` points.
- ``lc_win_rate`` = length-controlled win rate, AlpacaEval's ``length_controlled_v1`` (``lc``) by default or the
  simpler ``tanh-length`` fit (``stats.lc_win_rate``); ``lc_note`` says why a rate is withheld. Lengths in characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leaderboards import lc, query, ratings, selection, stats
from leaderboards.query import METRIC_NAMES, LeaderboardError

FIELDS = (
    ["rank", "model", "label", "baseline", "n", "wins", "ties", "losses", "win_pct", "tie_pct", "loss_pct",
     "win_rate", "win_rate_se", "win_rate_ci_low", "win_rate_ci_high", "lc_win_rate", "lc_win_rate_se", "lc_note",
     "bt", "bt_ci_low", "bt_ci_high", "bt_flag", "length", "tokens", "samples", "score", "score_ci_low",
     "score_ci_high", "score_n"]
    + [f"{m}{s}" for m in METRIC_NAMES for s in ("", "_ci_low", "_ci_high", "_n")]
    + ["run", "step", "loss", "beta", "params", "base_model", "code_version", "judge", "judge_version",
       "order_rule", "tie_policy", "lc_method"]
    + list(selection.ROW_FIELDS)
)

TEXT_FIELDS = frozenset({"model", "label", "run", "loss", "params", "base_model", "code_version", "judge",
                         "judge_version", "lc_note", "bt_flag", "order_rule", "tie_policy", "lc_method"}
                        | selection.TEXT_ROW_FIELDS)

# A BT interval wider than this spans from a 10:1 underdog to a 10:1 favourite against the same opponent (400
# points = 10:1 odds each way): the data do not place the model.
BT_WIDE_CI = 800.0
PERFECT = "perfect record"
WIDE = "wide CI"


@dataclass(frozen=True)
class LeaderboardConfig:
    judge: str | None = None  # JUDGE or JUDGE@VERSION; None: the only judge in the store
    baseline: str | None = None  # a checkpoint key, label or key prefix
    prompt_set: str | None = None
    ties: str | None = None  # None: the judge's own policy (``evalharness.imported.native_ties``), else "tie"
    n_resamples: int = 1000  # bootstrap resamples of prompts
    seed: int = 0
    level: float = 0.95
    order_rule: str = "agree"  # the rule boards used before rules were named, so stored numbers do not move
    lc: str = "alpacaeval-v1"
    instruction_difficulty: str | None = None  # a CSV of AlpacaEval's estimates (``lc.read_difficulty``)
    # Which evaluation (``leaderboards.selection``); None: the only one the store holds, else an error lists them.
    template: str | None = None  # the judge's template: NAME, NAME@HASH or a prefix
    turn: int | str | None = None  # a turn number, or "all" to pool the turns
    temperature: float | str | None = None  # a number (0: greedy) or a per-category rule such as "fastchat"
    sampling: str | None = None  # a setting's short id, where two settings share a temperature
    held_out: str | None = None  # the held-out evaluation of perplexity, agility and margins
    bt_games: str = "pairs"  # "arena-hard": each order a game, a strong verdict three (``stats.arena_hard_games``)

    def __post_init__(self):
        object.__setattr__(self, "turn", selection.parse_turn(self.turn))
        object.__setattr__(self, "temperature", selection.parse_temperature(self.temperature))
        if self.ties is not None and self.ties not in stats.TIE_POLICIES:
            raise LeaderboardError(f"--ties must be one of {', '.join(stats.TIE_POLICIES)}, got {self.ties!r}")
        if self.order_rule not in stats.ORDER_RULES:
            raise LeaderboardError(f"--order-rule must be one of {', '.join(stats.ORDER_RULES)}, "
                                   f"got {self.order_rule!r}")
        if self.lc not in lc.LC_METHODS:
            raise LeaderboardError(f"--lc must be one of {', '.join(lc.LC_METHODS)}, got {self.lc!r}")
        if self.instruction_difficulty is not None and self.lc != "alpacaeval-v1":
            raise LeaderboardError("--instruction-difficulty is used only by --lc alpacaeval-v1")
        if self.bt_games not in stats.BT_GAMES:
            raise LeaderboardError(f"--bt-games must be one of {', '.join(stats.BT_GAMES)}, got {self.bt_games!r}")
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

    table = lc.read_difficulty(cfg.instruction_difficulty) if cfg.instruction_difficulty else None
    with query.read_store(store) as con:
        variants = query.judge_variants(con, cfg.prompt_set)
        graded = ratings.rating_variants(con, cfg.prompt_set)
        if graded and not [v for v in variants if cfg.judge in (None, v.judge, f"{v.judge}@{v.version}") and (
                cfg.template is None or query.template_matches(v.template, cfg.template))]:
            return _graded_board(con, graded, cfg, code_version())  # single-answer grades alone
        if not variants and cfg.judge is None and cfg.prompt_set is None:  # nothing judged yet: metrics only
            records = query.metric_records(con)
            samples = selection.choose_samples(records, cfg.prompt_set, cfg.temperature, cfg.sampling)
            held = selection.choose_held_out(records, cfg.held_out)
            metrics, labels = query.load_metrics(con, accept=selection.accept(samples, held), records=records)
            keys = sorted(metrics)
            if not keys:
                raise LeaderboardError("the store holds no judgments and no metrics yet "
                                       "(run `evalharness judge`, `evalharness eval` or `evalharness import`)")
            info = {k: query.ModelInfo(k, labels.get(k, k)) for k in keys}
            return metrics_only(keys, info, metrics, query.load_provenance(con, keys), code_version(),
                                selection.metrics_meta(samples, held))
        variant = query.select_judge(variants, cfg.judge, cfg.prompt_set, cfg.template)
        key = selection.choose_key(con, variant, cfg.prompt_set, cfg.turn, cfg.temperature, cfg.sampling)
        pairs = query.load_pairs(con, variant, key=key)
        if not len(pairs.a):
            raise LeaderboardError(f"judge {variant.name} has no pair with a valid verdict on {key.prompt_set!r}")
        info = query.model_info(con, variant, None, pairs.models, key)
        records = query.metric_records(con, pairs.models)
        held = selection.choose_held_out(records, cfg.held_out)
        samples = (key.prompt_set, key.sampling)
        metrics, _ = query.load_metrics(con, accept=selection.accept(samples, held), records=records)
        evaluation = selection.board_meta(key, pairs.prompt_ids,
                                          selection.samples_per_prompt(con, *query._selection(variant, None, key)),
                                          selection.metrics_meta(samples, held))
        provenance = query.load_provenance(con, pairs.models)
        rated = ratings.matching(graded, variant)
        scores = rated and ratings.load_scores(con, rated, key, cfg.n_resamples, cfg.seed, cfg.level)
        difficulty = None
        if table is not None:
            difficulty = lc.difficulty_for_prompts(table, *query.prompt_keys(con, pairs.prompt_ids))
            if not np.isfinite(difficulty).any():
                raise LeaderboardError(f"--instruction-difficulty {cfg.instruction_difficulty}: none of its "
                                       f"{len(next(iter(table.values())))} rows matches one of the board's "
                                       f"{pairs.n_prompts} prompts (by AlpacaEval position or instruction text)")
    return board_from_pairs(pairs, info, metrics, provenance, cfg, variant, code_version(), difficulty=difficulty,
                            evaluation=evaluation, scores=scores or None)


def default_baseline(pairs: query.PairTable) -> int | None:
    """The runner's baseline mode leaves one model as B in every pair and never as A: that model is the baseline."""
    bs = np.unique(pairs.b)
    if len(bs) == 1 and not np.any(pairs.a == bs[0]):
        return int(bs[0])
    return None


def tie_policy(cfg: LeaderboardConfig, variant: query.JudgeVariant) -> tuple[str, bool]:
    """The tie policy and whether it is the judge's own (no ``--ties`` given and the judge declares one)."""
    from evalharness.imported import native_ties

    if cfg.ties is not None:
        return cfg.ties, False
    own = native_ties(variant.judge, variant.version)
    return (own, True) if own else ("tie", False)


def board_from_pairs(pairs: query.PairTable, info: dict[str, query.ModelInfo],
                     metrics: dict[str, dict[str, query.MetricValue]], provenance: dict[str, query.Provenance],
                     cfg: LeaderboardConfig, variant: query.JudgeVariant, version: str = "",
                     difficulty: np.ndarray | None = None, evaluation: dict[str, Any] | None = None,
                     scores: ratings.Scores | None = None) -> Leaderboard:
    """Compute the statistics over ``pairs`` and lay out one flat row per model, best first. ``difficulty`` (P,)
    per prompt: AlpacaEval's instruction difficulty from a file (NaN where it has none). ``evaluation``: what the
    pairs and metrics were selected by (``selection.board_meta``), into the meta and every row. ``scores``: the
    judge's single-answer grades of the same evaluation (the MT-Bench score column)."""
    evaluation = {"prompt_set": cfg.prompt_set, **(evaluation or {})}
    labels = {k: i.label for k, i in info.items()}
    if cfg.baseline is not None:
        baseline = pairs.models.index(query.resolve_label(cfg.baseline, pairs.models, labels))
    else:
        baseline = default_baseline(pairs)
    ties, own_ties = tie_policy(cfg, variant)
    if pairs.n_valid is not None:
        verdict, score, usable = stats.apply_order_rule(cfg.order_rule, pairs.n_valid, pairs.n_invalid, pairs.n_a,
                                                        pairs.n_b, pairs.a_mean)
    else:
        verdict, score, usable = pairs.verdict, (pairs.verdict + 1.0) / 2.0, np.ones(len(pairs.a), dtype=bool)
    a, b, prompt, p_a, len_a, len_b = (x[usable] for x in (pairs.a, pairs.b, pairs.prompt, pairs.p_a, pairs.len_a,
                                                          pairs.len_b))
    verdict, score = verdict[usable], score[usable]
    games = None
    if cfg.bt_games == "arena-hard":
        games = stats.arena_hard_games(*(x[usable] for x in (pairs.n_valid, pairs.a_mean * pairs.n_valid,
                                                             pairs.n_strong_a, pairs.n_strong_b)))
    s = stats.board_stats(a, b, prompt, verdict, p_a, len_a, len_b, len(pairs.models), pairs.n_prompts, baseline,
                          ties, cfg.n_resamples, cfg.seed, cfg.level, score=score, with_lc=cfg.lc == "tanh-length",
                          bt_games=games)
    lc_rate, lc_note, lc_how = s.lc, [None] * len(pairs.models), "tanh-length"
    if cfg.lc == "alpacaeval-v1":
        y, keep = stats.pair_outcomes(verdict, p_a, ties, score)
        lc_rate, lc_note, lc_how = _alpacaeval_lc(pairs, labels, baseline, a, b, prompt, y, keep, len_a, len_b,
                                                  s.win_rate, difficulty)
    rows = []
    for i, key in enumerate(pairs.models):
        row = _base_row(key, info[key], metrics.get(key, {}), provenance.get(key))
        row.update(baseline=i == baseline, judge=variant.judge, judge_version=variant.version,
                   order_rule=cfg.order_rule, tie_policy=ties, lc_method=cfg.lc, template=variant.template or None,
                   **_evaluation_fields(evaluation))
        if i != baseline:
            total = int(s.wins[i] + s.ties[i] + s.losses[i])
            row.update(n=int(s.n[i]), wins=int(s.wins[i]), ties=int(s.ties[i]), losses=int(s.losses[i]))
            if total:
                row.update(win_pct=100.0 * int(s.wins[i]) / total, tie_pct=100.0 * int(s.ties[i]) / total,
                           loss_pct=100.0 * int(s.losses[i]) / total)
            row.update(win_rate=_pct(s.win_rate[i]), win_rate_se=_pct(s.se[i]), win_rate_ci_low=_pct(s.ci_low[i]),
                       win_rate_ci_high=_pct(s.ci_high[i]), lc_win_rate=_pct(lc_rate[i]),
                       lc_win_rate_se=_pct(s.lc_se[i]), lc_note=lc_note[i])
        row.update(bt=_num(s.bt[i]), bt_ci_low=_num(s.bt_low[i]), bt_ci_high=_num(s.bt_high[i]),
                   bt_flag=_bt_flag(bool(s.bt_perfect[i]), s.bt_low[i], s.bt_high[i]), **_score_fields(scores, key))
        rows.append(row)
    rows = _ranked(rows)
    meta = {
        "judge": variant.judge, "judge_version": variant.version, "template": variant.template,
        "baseline": pairs.models[baseline] if baseline is not None else None,
        "baseline_label": labels.get(pairs.models[baseline]) if baseline is not None else None,
        **evaluation, "order_rule": cfg.order_rule, "ties": ties, "lc_method": cfg.lc,
        "bootstrap": cfg.n_resamples, "seed": cfg.seed, "level": cfg.level, "pairs": int(usable.sum()),
        "prompts": pairs.n_prompts, "orders": pairs.orders, "invalid_orders": pairs.invalid_orders,
        "unusable_pairs": pairs.unusable_pairs, "dropped_pairs": int((~usable).sum()),
        "single_order_pairs": pairs.single_order_pairs, "code_version": version,
        "notes": _notes(cfg, baseline is not None, ties, own_ties, int((~usable).sum()), lc_how, rows),
    }
    if cfg.bt_games == "arena-hard":
        meta["notes"].append("BT games (arena-hard, arena-hard-auto's show_result.py): each valid order is a game, a "
                             f"strong verdict ([[A>>B]]) counts {stats.STRONG_WEIGHT} games, a tie half a win each")
    meta["notes"] += _score_notes(scores, cfg)
    if evaluation.get("mixed_sampling_pairs"):
        meta["notes"].append(f"{evaluation['mixed_sampling_pairs']} pairs of this judge whose two sides were sampled "
                             "at different settings are left out")
    return Leaderboard(rows, meta)


def _score_fields(scores: ratings.Scores | None, key: str) -> dict[str, Any]:
    if scores is None or key not in scores.mean:
        return {}
    return {"score": _num(scores.mean[key]), "score_ci_low": _num(scores.low[key]),
            "score_ci_high": _num(scores.high[key]), "score_n": scores.n[key]}


def _score_notes(scores: ratings.Scores | None, cfg: LeaderboardConfig) -> list[str]:
    if scores is None:
        return []
    return [f"MT-Bench score = mean single-answer grade (1-10) by {scores.variant.name} over the board's turns, "
            f"{int(round(cfg.level * 100))}% CI = percentile bootstrap over prompts; {scores.left_out} unparsed or "
            "failed grades left out"]


def _graded_board(con, graded: list[query.JudgeVariant], cfg: LeaderboardConfig, version: str) -> Leaderboard:
    """A board of single-answer grades alone: one row per graded model, best score first."""
    variant = ratings.select(graded, cfg.judge, cfg.template)
    key = ratings.choose_key(con, variant, cfg.prompt_set, cfg.turn, cfg.temperature, cfg.sampling)
    scores = ratings.load_scores(con, variant, key, cfg.n_resamples, cfg.seed, cfg.level)
    keys = sorted(scores.mean)
    info = query.model_info(con, None, key.prompt_set, keys)
    metrics, _ = query.load_metrics(con, keys)
    evaluation = selection.board_meta(key, [], None, {})
    rows = _ranked([{**_base_row(k, info[k], metrics.get(k, {}), query.load_provenance(con, [k]).get(k)),
                     **_evaluation_fields(evaluation), **_score_fields(scores, k), "judge": variant.judge,
                     "judge_version": variant.version, "template": variant.template} for k in keys])
    return Leaderboard(rows, {"judge": variant.judge, "judge_version": variant.version, "template": variant.template,
                              **evaluation, "bootstrap": cfg.n_resamples, "seed": cfg.seed, "level": cfg.level,
                              "code_version": version, "notes": _score_notes(scores, cfg)})


def _evaluation_fields(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {k: evaluation.get(k) for k in selection.ROW_FIELDS if k != "template"}


def _alpacaeval_lc(pairs: query.PairTable, labels: dict[str, str], baseline: int | None, a, b, prompt, y, keep,
                   len_a, len_b, raw, difficulty) -> tuple[np.ndarray, list, str]:
    """AlpacaEval's LC against the baseline (``lc.length_controlled_v1``): rates, reasons, and how it was fitted."""
    m = len(pairs.models)
    if baseline is None:
        return np.full(m, np.nan), [lc.NO_BASELINE] * m, "no baseline: not fitted"
    side_a, side_b = (b == baseline) & (a != baseline) & keep, (a == baseline) & (b != baseline) & keep
    model = np.concatenate([a[side_a], b[side_b]])
    ey = np.concatenate([y[side_a], 1.0 - y[side_b]])
    eprompt = np.concatenate([prompt[side_a], prompt[side_b]])
    own_len = np.concatenate([len_a[side_a], len_b[side_b]])
    base_len = np.concatenate([len_b[side_a], len_a[side_b]])
    if difficulty is not None:
        known = int(np.isfinite(difficulty).sum())
        source = f"from the file ({known} of {len(difficulty)} prompts)"
    else:
        joint, n_models = lc.difficulty_from_outcomes(model, eprompt, ey, pairs.n_prompts)
        difficulty = joint if n_models >= lc.MIN_DIFFICULTY_MODELS else None
        source = (f"fitted from the {n_models} rated models' outcomes" if difficulty is not None else
                  f"none: {n_models} rated model(s), a joint fit needs {lc.MIN_DIFFICULTY_MODELS}, and no "
                  "--instruction-difficulty file")
    base = labels.get(pairs.models[baseline], pairs.models[baseline])
    gamed = [i for i, k in enumerate(pairs.models) if labels.get(k) in (f"{base}_verbose", f"{base}_concise")]
    result = lc.length_controlled_v1(model, eprompt, ey, own_len, base_len, difficulty, m, raw, gamed)
    reg = (f"regularised toward the baseline with lambda = {lc.LAMBDA} by the gamed baselines "
           + ", ".join(labels.get(pairs.models[g], pairs.models[g]) for g in result.gamed) if result.gamed else
           f"not regularised toward the baseline (no {base}_verbose / {base}_concise in the store)")
    return result.rate, result.note, f"difficulty {source}; {reg}"


def _bt_flag(perfect: bool, low: float, high: float) -> str | None:
    flags = [PERFECT] if perfect else []
    if np.isfinite(low) and np.isfinite(high) and high - low > BT_WIDE_CI:
        flags.append(WIDE)
    return "; ".join(flags) or None


def metrics_only(keys: list[str], info: dict[str, query.ModelInfo], metrics, provenance, version: str,
                 evaluation: dict[str, Any] | None = None) -> Leaderboard:
    evaluation = evaluation or {}
    rows = _ranked([{**_base_row(k, info[k], metrics.get(k, {}), provenance.get(k)),
                     **_evaluation_fields(evaluation)} for k in keys])
    return Leaderboard(rows, {"judge": None, **evaluation, "code_version": version,
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
        wr, bt, score = r.get("win_rate"), r.get("bt"), r.get("score")
        return (wr is None, -(wr or 0.0), bt is None, -(bt or 0.0), score is None, -(score or 0.0), r["label"] or "",
                r["model"])

    rows = sorted(rows, key=key)
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    return rows


ORDER_NOTES = {
    "agree": "verdict per pair (order rule agree): both orders agree -> that side wins; they disagree or either says "
             "tie -> tie; a single valid order decides alone; unparsed/failed orders are left out",
    "fastchat": "verdict per pair (order rule fastchat, FastChat's): both orders agree -> that side wins; they "
                "disagree or either says tie -> tie; a pair with an unparsed/failed order is dropped",
    "alpacaeval": "outcome per pair (order rule alpacaeval, AlpacaEval's): the mean of its valid orders' "
                  "preferences (1 / 0.5 / 0 each); its verdict the side that mean leans to; unparsed/failed orders "
                  "are left out",
}


def _win_rate_formula(ties: str, rule: str) -> str:
    mean = "the mean of the per-pair outcomes" if rule == "alpacaeval" else None
    if ties == "tie":
        return f"win rate = {mean} (a tied pair 0.5)" if mean else "win rate = (wins + ties/2)/n"
    if ties == "exclude":
        return (f"win rate = {mean} over the pairs that are not tied; tied pairs are left out of n" if mean else
                "win rate = wins/(wins + losses); tied pairs are left out of n")
    return ("win rate = mean over pairs of P(model preferred), averaged over the pair's valid orders, each order "
            "counting the judge's probability where it gives one (AlpacaEval: preference - 1), else 1 / 0.5 / 0")


def _notes(cfg: LeaderboardConfig, has_baseline: bool, ties: str, own_ties: bool, dropped: int, lc_how: str,
           rows: list[dict[str, Any]]) -> list[str]:
    pct = int(round(cfg.level * 100))
    order = ORDER_NOTES[cfg.order_rule] + (f" ({dropped} pairs)" if cfg.order_rule == "fastchat" else "")
    policy = f"ties: {ties}" + (" (the judge's own policy)" if own_ties else "")
    notes = [
        order,
        f"{policy}; {_win_rate_formula(ties, cfg.order_rule)}; SE = sample SD of per-pair outcomes / sqrt(n); "
        f"{pct}% CI = percentile bootstrap over prompts ({cfg.n_resamples} resamples, seed {cfg.seed})",
        "BT = Bradley-Terry MLE over all pairs, Elo scale 400*log10 + 1000, "
        + ("the baseline fixed at 1000" if has_baseline else "the mean over models fixed at 1000"),
    ]
    if cfg.lc == "alpacaeval-v1":
        notes.append(
            "LC (alpacaeval-v1) = AlpacaEval's length_controlled_v1: logistic fit of the model's outcomes on "
            "tanh(length difference / its SD) + instruction difficulty + a model term, no intercept, L1 penalty "
            f"chosen by {lc.N_SPLITS}-fold CV; LC = mean over the model's instructions of the prediction at zero "
            f"length difference; no SE; length in characters; {lc_how}")
        reasons = sorted({r["lc_note"] for r in rows if r.get("lc_note")})
        if reasons:
            notes.append("LC withheld where: " + "; ".join(_LC_REASONS[r] for r in reasons))
    else:
        notes.append("LC (tanh-length, not AlpacaEval's) = per-model logistic fit on tanh(normalised length "
                     "difference), no instruction term, no regularisation, predicted at equal length; "
                     "length in characters")
    flags = {f for r in rows for f in (r.get("bt_flag") or "").split("; ") if f}
    if PERFECT in flags:
        notes.append(f"BT {PERFECT}: the model won (or lost) every game it played, so its rating has no finite "
                     "maximum-likelihood value; the number shown is set by the fit's weak prior, not by the data")
    if WIDE in flags:
        notes.append(f"BT {WIDE}: the {pct}% CI spans more than {BT_WIDE_CI:.0f} points (10:1 odds each way): "
                     "too few games to place the model")
    return notes


_LC_REASONS = {
    lc.NO_BASELINE: f"'{lc.NO_BASELINE}': AlpacaEval's LC is defined against one baseline (give --baseline)",
    lc.NO_DIFFICULTY: f"'{lc.NO_DIFFICULTY}': no instruction difficulty for its prompts (give "
                      f"--instruction-difficulty, or judge at least {lc.MIN_DIFFICULTY_MODELS} models against the "
                      "baseline)",
    lc.TOO_FEW: f"'{lc.TOO_FEW}': fewer than {lc.MIN_PAIRS} pairs with lengths and a difficulty",
    lc.ONE_SIDED_LENGTHS: f"'{lc.ONE_SIDED_LENGTHS}': at least {lc.ONE_SIDED:.0%} of its answers are longer (or "
                          "shorter) than the baseline's and no gamed baseline anchors the length weight",
    lc.FAR_FROM_RAW: f"'{lc.FAR_FROM_RAW}' (shown): the LC moved further from the raw rate than AlpacaEval's "
                     "check allows (the GLM may have failed)",
}


def _pct(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(100.0 * x)


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# ------------------------------------------------------------------------------------------------ rendering


def leaderboard_table(board: Leaderboard):
    """The leaderboard as a renderable ``Table``: display columns for humans, every field for CSV/JSON."""
    from leaderboards.render import num, sig, text, with_ci
    from leaderboards.table import Column, Table

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

    def lc_cell(r):
        if r["lc_win_rate"] is None:
            return f"n/a: {r['lc_note']}" if r.get("lc_note") else ""
        return num(r["lc_win_rate"]) + (f" ({r['lc_note']})" if r.get("lc_note") else "")

    def bt_cell(r):
        cell = with_ci(num(r["bt"], 0), num(r["bt_ci_low"], 0), num(r["bt_ci_high"], 0))
        return cell + (f" ({r['bt_flag']})" if cell and r.get("bt_flag") else "")

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
        Column("LC win rate", lc_cell, "lc_win_rate"),
        Column("BT", bt_cell, "bt"),
        Column("MT-Bench score", lambda r: with_ci(num(r["score"]), num(r["score_ci_low"]), num(r["score_ci_high"])),
               "score"),
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
        title += f" [{board.meta['template']}]" if board.meta.get("template") else ""
    if board.meta.get("baseline_label"):
        title += f" vs {board.meta['baseline_label']}"
    title += selection.title_suffix(board.meta)
    return Table(title, list(FIELDS), board.rows, columns, meta, list(board.meta.get("notes", [])))
