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

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from leaderboards import lc, query, ratings, replicates, selection, stats
from leaderboards.board_config import Leaderboard, LeaderboardConfig
from leaderboards.board_notes import board_notes, score_notes
from leaderboards.board_rows import (
    BT_WIDE_CI,
    FIELDS,
    PERFECT,
    TEXT_FIELDS,
    WIDE,
    base_row,
    bt_flag,
    evaluation_fields,
    finite,
    pct,
    ranked,
    score_fields,
)
from leaderboards.board_table import leaderboard_table
from leaderboards.query import LeaderboardError

__all__ = ["BT_WIDE_CI", "FIELDS", "PERFECT", "TEXT_FIELDS", "WIDE", "Leaderboard", "LeaderboardConfig",
           "board_from_pairs", "build_leaderboard", "leaderboard_table", "metrics_only"]


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
        only = cfg.models
        if cfg.model_names:
            every = query.load_pairs(con, variant, key=key, only=only)
            named = {k: i.label for k, i in query.model_info(con, variant, None, every.models, key).items()}
            only = tuple(dict.fromkeys(query.resolve_label(n, every.models, named) for n in cfg.model_names))
            if len(only) < 2:
                raise LeaderboardError(f"--models names {len(only)} model; a board compares at least two")
            cfg = dataclasses.replace(cfg, models=only, model_names=None)  # the board's meta states the keys
        pairs = query.load_pairs(con, variant, key=key, only=only)
        if not len(pairs.a):
            raise LeaderboardError(f"judge {variant.name} has no pair with a valid verdict on {key.prompt_set!r}")
        info = query.model_info(con, variant, None, pairs.models, key)
        records = query.metric_records(con, pairs.models)
        held = selection.choose_held_out(records, cfg.held_out)
        samples = (key.prompt_set, key.sampling)
        metrics, _ = query.load_metrics(con, accept=selection.accept(samples, held), records=records)
        evaluation = selection.board_meta(key, pairs.prompt_ids,
                                          selection.samples_per_prompt(con, *query._selection(variant, None, key)),
                                          selection.metrics_meta(samples, held),
                                          selection.prompt_source(con, pairs.prompt_ids))
        provenance = query.load_provenance(con, pairs.models)
        labels = {k: i.label for k, i in info.items()}
        groups = [] if cfg.per_seed else replicates.find_groups(con, pairs.models, labels)
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
                            evaluation=evaluation, scores=scores or None, groups=groups)


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
                     scores: ratings.Scores | None = None, groups: list[replicates.Group] | None = None,
                     ) -> Leaderboard:
    """Compute the statistics over ``pairs`` and lay out one flat row per model, best first. ``difficulty`` (P,)
    per prompt: AlpacaEval's instruction difficulty from a file (NaN where it has none). ``evaluation``: what the
    pairs and metrics were selected by (``selection.board_meta``), into the meta and every row. ``scores``: the
    judge's single-answer grades of the same evaluation (the MT-Bench score column). ``groups``: seed replicates,
    each shown as one row (``replicates.aggregate``)."""
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
    y, keep = stats.pair_outcomes(verdict, p_a, ties, score)
    if cfg.lc == "alpacaeval-v1":
        lc_rate, lc_note, lc_how = _alpacaeval_lc(pairs, labels, baseline, a, b, prompt, y, keep, len_a, len_b,
                                                  s.win_rate, difficulty)
    rows = []
    for i, key in enumerate(pairs.models):
        row = base_row(key, info[key], metrics.get(key, {}), provenance.get(key))
        row.update(baseline=i == baseline, judge=variant.judge, judge_version=variant.version,
                   order_rule=cfg.order_rule, tie_policy=ties, lc_method=cfg.lc, template=variant.template or None,
                   **evaluation_fields(evaluation))
        if i != baseline:
            total = int(s.wins[i] + s.ties[i] + s.losses[i])
            row.update(n=int(s.n[i]), wins=int(s.wins[i]), ties=int(s.ties[i]), losses=int(s.losses[i]))
            if total:
                row.update(win_pct=100.0 * int(s.wins[i]) / total, tie_pct=100.0 * int(s.ties[i]) / total,
                           loss_pct=100.0 * int(s.losses[i]) / total)
            row.update(win_rate=pct(s.win_rate[i]), win_rate_se=pct(s.se[i]), win_rate_ci_low=pct(s.ci_low[i]),
                       win_rate_ci_high=pct(s.ci_high[i]), lc_win_rate=pct(lc_rate[i]),
                       lc_win_rate_se=pct(s.lc_se[i]), lc_note=lc_note[i])
        row.update(bt=finite(s.bt[i]), bt_ci_low=finite(s.bt_low[i]), bt_ci_high=finite(s.bt_high[i]),
                   bt_flag=bt_flag(bool(s.bt_perfect[i]), s.bt_low[i], s.bt_high[i]), **score_fields(scores, key))
        rows.append(row)
    rows, replicate_notes = replicates.aggregate(rows, groups or [], pairs.models, baseline, a[keep], b[keep],
                                                 prompt[keep], y[keep], pairs.n_prompts, cfg.n_resamples, cfg.seed,
                                                 cfg.level)
    rows = ranked(rows)
    meta = {
        "judge": variant.judge, "judge_version": variant.version, "template": variant.template,
        "baseline": pairs.models[baseline] if baseline is not None else None,
        "baseline_label": labels.get(pairs.models[baseline]) if baseline is not None else None,
        **evaluation, "order_rule": cfg.order_rule, "ties": ties, "lc_method": cfg.lc,
        "bootstrap": cfg.n_resamples, "seed": cfg.seed, "level": cfg.level, "pairs": int(usable.sum()),
        "prompts": pairs.n_prompts, "orders": pairs.orders, "invalid_orders": pairs.invalid_orders,
        "unusable_pairs": pairs.unusable_pairs, "dropped_pairs": int((~usable).sum()),
        "single_order_pairs": pairs.single_order_pairs, "code_version": version,
        "notes": board_notes(cfg, baseline is not None, ties, own_ties, int((~usable).sum()), lc_how, rows),
    }
    if cfg.models is not None:  # what a claim evaluated on this board reads again (``evalharness.claim_eval``)
        meta["models"] = sorted(cfg.models)
    if cfg.bt_games == "arena-hard":
        meta["notes"].append("BT games (arena-hard, arena-hard-auto's show_result.py): each valid order is a game, a "
                             f"strong verdict ([[A>>B]]) counts {stats.STRONG_WEIGHT} games, a tie half a win each")
    meta["notes"] += score_notes(scores, cfg) + replicate_notes
    if evaluation.get("mixed_sampling_pairs"):
        meta["notes"].append(f"{evaluation['mixed_sampling_pairs']} pairs of this judge whose two sides were sampled "
                             "at different settings are left out")
    return Leaderboard(rows, meta)


def _graded_board(con, graded: list[query.JudgeVariant], cfg: LeaderboardConfig, version: str) -> Leaderboard:
    """A board of single-answer grades alone: one row per graded model, best score first."""
    variant = ratings.select(graded, cfg.judge, cfg.template)
    key = ratings.choose_key(con, variant, cfg.prompt_set, cfg.turn, cfg.temperature, cfg.sampling)
    scores = ratings.load_scores(con, variant, key, cfg.n_resamples, cfg.seed, cfg.level)
    keys = sorted(scores.mean)
    info = query.model_info(con, None, key.prompt_set, keys)
    metrics, _ = query.load_metrics(con, keys)
    evaluation = selection.board_meta(key, [], None, {})
    rows = ranked([{**base_row(k, info[k], metrics.get(k, {}), query.load_provenance(con, [k]).get(k)),
                     **evaluation_fields(evaluation), **score_fields(scores, k), "judge": variant.judge,
                     "judge_version": variant.version, "template": variant.template} for k in keys])
    return Leaderboard(rows, {"judge": variant.judge, "judge_version": variant.version, "template": variant.template,
                              **evaluation, "bootstrap": cfg.n_resamples, "seed": cfg.seed, "level": cfg.level,
                              "code_version": version, "notes": score_notes(scores, cfg)})


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


def metrics_only(keys: list[str], info: dict[str, query.ModelInfo], metrics, provenance, version: str,
                 evaluation: dict[str, Any] | None = None) -> Leaderboard:
    evaluation = evaluation or {}
    rows = ranked([{**base_row(k, info[k], metrics.get(k, {}), provenance.get(k)),
                     **evaluation_fields(evaluation)} for k in keys])
    return Leaderboard(rows, {"judge": None, **evaluation, "code_version": version,
                              "notes": ["no judgments in the store: metrics and provenance only"]})


