"""Held-out pair metrics of one checkpoint: perplexity, agility, log-prob and implicit-reward margins, accuracies and
the margin's correlation with a judge's scores.

Held-out pairs are the part of a dataset that training holds out (``split_examples`` with ``data.eval_fraction``;
1.0 takes every pair, e.g. a test file): by default each run's own data and share (``held_out_data``), never more of
it than the run held out. They are tokenised by the trainer's own ``tokenize`` with the run's ``max_length``,
``max_prompt_length`` and prompt style (a plain model evaluated beside runs: theirs, where they agree), and scored by ``sequence_logps`` (no grad, eval mode, logits at
temperature 1), so a number here is what training sees. Reference log-probs go through the trainer's reference cache
(``trainers.refcache``): a held-out sequence is never scored twice by the same reference.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.config import ConfigError, DataConfig
from evalharness.data.types import PreferencePair
from evalharness.evaluation.common import CheckpointReport, EvalConfig, LazyModel, Planned, reference_key, write_rows
from evalharness.generate import Target
from evalharness.hashing import content_hash
from evalharness.metrics import CORRELATIONS, PAIR_METRICS, REFERENCE_METRICS
from evalharness.store import Store

HELD_OUT_TEMPERATURE = 1.0  # held-out log-probs are the model's own distribution, as perplexity is defined
# Scores that held-out pairs may carry (UltraFeedback's ratings; the synthetic task's oracle rewards): the judge
# score difference that seed 002 §4.4 correlates with the margin.
SCORE_FIELDS = (("score_chosen", "score_rejected", "dataset ratings"), ("gold_chosen", "gold_rejected", "oracle"))


@dataclass
class HeldOut:
    pairs: list[PreferencePair]
    dataset: str  # name@hash of the held-out pair ids
    scores: tuple[str, list[float], list[float]] | None  # (source, s+, s-) when every pair carries a judge's scores
    eval_fraction: float = 1.0  # the share of the data held out


def load_held_out(data: DataConfig) -> HeldOut:
    """The held-out preference pairs of ``data`` (the split training uses) and a name for them."""
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.split import split_examples

    try:
        spec = DatasetSpec(name=data.name, path=data.path, split=data.split, columns=dict(data.columns),
                           limit=data.limit)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    loaded = load(spec)
    if data.path and not loaded.examples:
        raise ConfigError(f"{data.path}: no usable pairs ({loaded.report.summary()})")
    _, held = split_examples(loaded.examples, data.eval_fraction, seed=0)
    kinds = {type(ex).__name__ for ex in held if not isinstance(ex, PreferencePair)}
    if kinds:
        raise ConfigError(f"dataset {data.name!r} holds {', '.join(sorted(kinds))}, not preference pairs; "
                          "held-out metrics need (x+, y+, x-, y-) pairs")
    if not held:
        raise ConfigError(f"dataset {data.name!r}: none of its {len(loaded.examples)} examples is held out at "
                          f"eval_fraction={data.eval_fraction}; raise it (1 takes every pair) or the limit")
    return HeldOut(held, f"{data.name}@{content_hash(['held-out', [p.id for p in held]], 8)}", _scores_of(held),
                   data.eval_fraction)


def trained_config(run: dict[str, Any] | None) -> dict[str, Any]:
    return _json(run["config"]) if run else {}


# What a plain model evaluated beside runs borrows from them, each where they all agree: the data and the lengths.
_SHARED = ("data", "max_length", "max_prompt_length", "prompt_style")


def shared_training(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each of the data, the lengths and the prompt style that every run of ``runs`` trained with, where they agree
    (what they disagree on keeps its default)."""
    configs = [trained_config(r) for r in runs]
    return {k: configs[0].get(k) for k in _SHARED
            if configs and all(c.get(k) == configs[0].get(k) for c in configs) and configs[0].get(k) is not None}


def _source(data: DataConfig) -> tuple:
    return (data.name, data.path, data.split, dict(data.columns))


def held_out_data(cfg: EvalConfig, trained: dict[str, Any], name: str) -> DataConfig:
    """The data a checkpoint's held-out metrics read, with the share held out: the run's own data and share unless
    ``cfg`` names others (``trained``: the run's config, or what the runs beside a plain model share). Of the data
    the run trained on, more than its own share would count training pairs as held out: refused."""
    own = None
    if isinstance(trained.get("data"), dict):
        from evalharness.config import bind

        own = bind(DataConfig, trained["data"], "[data]")
    data = cfg.data or own or DataConfig()
    fraction = cfg.eval_fraction if cfg.eval_fraction is not None else data.eval_fraction
    if own is not None and _source(data) == _source(own):
        if cfg.eval_fraction is None:
            fraction = own.eval_fraction
        elif fraction > own.eval_fraction:
            raise ConfigError(f"eval_fraction {fraction:g} is more than {name} held out of {own.name!r} "
                              f"({own.eval_fraction:g}): the extra pairs are ones it trained on; use at most "
                              f"{own.eval_fraction:g} (the default is the run's own)")
    return dataclasses.replace(data, eval_fraction=fraction)


def _scores_of(pairs: list[PreferencePair]) -> tuple[str, list[float], list[float]] | None:
    for pos, neg, source in SCORE_FIELDS:
        try:
            s_pos = [float(p.meta[pos]) for p in pairs]
            s_neg = [float(p.meta[neg]) for p in pairs]
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(v) for v in s_pos + s_neg):
            return f"{source} ({pos} - {neg})", s_pos, s_neg
    return None


def judge_scores(store: Store, spec: str, pairs: list[PreferencePair]) -> tuple[str, list[float], list[float]]:
    """A judge's pointwise scores of every held-out (x+, y+) and (x-, y-).

    Scores the judging runner already stored are read under its key, hash("score", judge id, version, template,
    conversation, text); the rest are computed with the judge's ``score`` (and not stored: ``scores`` rows belong to
    generations). A judge without ``score`` (a pairwise LLM judge) cannot give a score difference.
    """
    from evalharness.checkpoints import with_run_checkpoints
    from evalharness.data.types import as_messages
    from judges.base import JudgeError, build_judge, can_score

    try:
        judge = build_judge(with_run_checkpoints(spec, store))
    except JudgeError as e:
        raise ConfigError(str(e)) from None
    if not can_score(judge):
        raise ConfigError(f"judge {spec!r} gives no pointwise scores; the margin correlation needs a score per text")
    from evalharness.judging import pointwise_scores
    from evalharness.store_rows import score_key

    items = [(as_messages(x), y) for p in pairs for x, y in ((p.x_pos, p.y_pos), (p.x_neg, p.y_neg))]
    keys = [score_key(judge, msgs, y) for msgs, y in items]
    known, _ = pointwise_scores(store, judge, {k: (msgs, y, None, None) for k, (msgs, y) in zip(keys, items)},
                                write=False)
    values = [known[k] for k in keys]
    return f"judge {judge.id} v{judge.version} {judge.template}".rstrip(), values[0::2], values[1::2]


def _json(value) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return dict(value or {})


def augment_prefix(run: dict[str, Any] | None) -> str:
    """p ⊕ x's prefix: the run's own Sr-DPO prompt and separator when it has them, else seed 002's prompt + " "."""
    from trainers.losses.selfrefine import SelfRefineParams

    params = _json(run["params"]) if run else {}
    candidates = [params] + [v for v in params.values() if isinstance(v, dict)]
    for p in candidates:
        if isinstance(p.get("prompt"), str) and isinstance(p.get("separator"), str):
            return p["prompt"] + p["separator"]
    return SelfRefineParams().augment_prefix()


def pair_settings(cfg: EvalConfig, trained: dict[str, Any], eval_fraction: float) -> dict[str, Any]:
    """What the held-out numbers depend on: lengths and prompt style (flags, else ``trained``'s: the run's own, or
    those the runs beside a plain model share, else TrainConfig's), the share held out, bootstrap and seed."""
    max_length = cfg.max_length or trained.get("max_length") or 512
    max_prompt = cfg.max_prompt_length or trained.get("max_prompt_length") or 256
    if max_prompt >= max_length:
        raise ConfigError(f"max_prompt_length ({max_prompt}) must be < max_length ({max_length})")
    return {"eval_fraction": eval_fraction, "max_length": max_length, "max_prompt_length": max_prompt,
            "prompt_style": cfg.prompt_style or trained.get("prompt_style") or "auto",
            "temperature": HELD_OUT_TEMPERATURE, "bootstrap": cfg.bootstrap, "seed": cfg.seed}


def pair_rows(cfg: EvalConfig, store: Store, target: Target, run, held: HeldOut, wanted: list[str],
              policy: LazyModel, report: CheckpointReport, progress: bool,
              trained: dict[str, Any] | None = None) -> None:
    """Perplexity, agility, margins, accuracies and correlations of one checkpoint on the held-out pairs
    (``trained``: the config whose lengths apply, by default the run's own)."""
    base = pair_settings(cfg, trained if trained is not None else trained_config(run), held.eval_fraction)
    settings = {m: dict(base) for m in PAIR_METRICS if m in wanted}
    ref = _reference_for_pairs(target, wanted, report)
    prefix = augment_prefix(run)
    if ref is not None:
        for m in REFERENCE_METRICS:
            if m in wanted:
                settings[m] = {**base, "reference": ref[1]}
        if "prompt_augmented_accuracy" in settings:
            settings["prompt_augmented_accuracy"]["prompt_prefix"] = prefix
        wanted_corr = [m for m in CORRELATIONS if m in wanted]
        if wanted_corr and held.scores is None:
            for m in wanted_corr:
                report.skipped[m] = "the held-out pairs carry no judge scores"
        elif held.scores is not None:
            for m in wanted_corr:
                settings[m] = {**base, "reference": ref[1], "scores": held.scores[0],
                               "scores_hash": content_hash(list(held.scores[1:]), 8)}  # changed scores: new rows
    plan = Planned(store, target, held.dataset, settings)
    if plan.missing:
        _compute_pairs(cfg, store, plan, held, ref, prefix, base, policy, report, progress)
        write_rows(store, plan.new, {"batch_size": cfg.batch_size})
    report.rows += plan.rows()
    report.skipped.update(plan.undefined)


def _reference_for_pairs(target: Target, wanted: list[str], report: CheckpointReport) -> tuple[str, str] | None:
    """(reference path, key) for the log-ratio metrics, or None (with the reason) when the model is its own."""
    needs = [m for m in REFERENCE_METRICS + CORRELATIONS if m in wanted]
    if not needs:
        return None
    from evalharness.models import resolve_model

    ref_key = reference_key(target.reference)
    if ref_key == target.key or Path(resolve_model(target.reference)).resolve() == Path(target.path).resolve():
        for m in needs:
            report.skipped[m] = "the model is its own reference (give --reference)"
        return None
    return str(resolve_model(target.reference)), ref_key


def _compute_pairs(cfg, store, plan: Planned, held: HeldOut, ref, prefix, base, policy: LazyModel,
                   report: CheckpointReport, progress: bool) -> None:
    import numpy as np

    from evalharness import metrics as M
    from evalharness.scoring import tokenize

    need_aug = "prompt_augmented_accuracy" in plan.missing
    tok = tokenize(held.pairs, policy.tokenizer(), base["prompt_style"], base["max_length"],
                   base["max_prompt_length"], prefix if need_aug else None)
    if tok.truncated or tok.skipped:
        report.notes.append(f"held-out pairs: {tok.truncated} truncated (prompt from the left, response from the "
                            f"right), {len(tok.skipped)} skipped (the prompt alone filled max_length)")
    if not tok.examples:
        for m in plan.missing:
            report.skipped[m] = "every held-out pair was skipped at this max_length"
        return
    kept = {ex.id for ex in tok.examples}
    ex = tok.examples
    model, _, pad = policy.get()
    pos, neg = [e.chosen for e in ex], [e.rejected for e in ex]
    lp_pos, t_pos = score_seqs(model, pos, pad, cfg.batch_size, "policy y+", progress)
    lp_neg, t_neg = score_seqs(model, neg, pad, cfg.batch_size, "policy y-", progress)
    b, s = cfg.bootstrap, cfg.seed
    for name, est in M.pair_metrics(lp_pos, t_pos, lp_neg, t_neg, b, s).items():
        plan.add(name, est)
    if ref is None or not set(plan.missing) & set(REFERENCE_METRICS + CORRELATIONS):
        return
    cached = reference_logps(store, ref, pos + neg, pad, cfg.batch_size, progress)
    h = M.log_ratio_margins(lp_pos, cached[: len(ex)], lp_neg, cached[len(ex):])
    for name, est in M.reward_metrics(h, b, s).items():
        plan.add(name, est)
    if need_aug:
        aug_pos, aug_neg = [e.augmented_chosen for e in ex], [e.augmented_rejected for e in ex]
        ap, _ = score_seqs(model, aug_pos, pad, cfg.batch_size, "policy p+x+", progress)
        an, _ = score_seqs(model, aug_neg, pad, cfg.batch_size, "policy p+x-", progress)
        ref_aug = reference_logps(store, ref, aug_pos + aug_neg, pad, cfg.batch_size, progress)
        h_p = M.log_ratio_margins(ap, ref_aug[: len(ex)], an, ref_aug[len(ex):])
        plan.add("prompt_augmented_accuracy", M.mean_estimate((h_p > 0).astype(np.float64), b, s))
    if held.scores is not None and len(ex) >= 2:
        source, s_pos, s_neg = held.scores
        diff = np.array([sp - sn for p, sp, sn in zip(held.pairs, s_pos, s_neg) if p.id in kept])
        for m in CORRELATIONS:
            if m in plan.missing:
                plan.add(m, M.correlation(m, h, diff, b, s))


def score_seqs(model, seqs: list, pad: int, batch_size: int, what: str = "", progress: bool = False,
               temperature: float = HELD_OUT_TEMPERATURE):
    """Summed response log-probs and token counts (float64 numpy [N]) of ``seqs`` under ``model``, in input order.

    Batches of 2 x ``batch_size`` sequences, longest first (little padding), no gradients.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from evalharness.scoring import sequence_logps

    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
    lp, tokens = np.zeros(len(seqs)), np.zeros(len(seqs))
    step = 2 * batch_size
    bar = tqdm(total=len(seqs), desc=what, unit="seq", disable=not progress)
    with torch.no_grad():
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            fwd = sequence_logps(model, [seqs[i] for i in idx], pad, temperature)
            lp[idx] = fwd.summed.double().cpu().numpy()
            tokens[idx] = fwd.lengths.double().cpu().numpy()
            bar.update(len(idx))
    bar.close()
    return lp, tokens


def reference_logps(store: Store, ref: tuple[str, str], seqs: list, pad: int, batch_size: int, progress: bool,
                    temperature: float = HELD_OUT_TEMPERATURE):
    """Reference log-probs [N] through the trainer's cache: read from the store, the rest computed and stored.

    ``ref`` is (path, ``model:<fingerprint>``): the cache key is the fingerprint, as in training.
    """
    import numpy as np

    from evalharness.models import load_causal_lm
    from trainers.refcache import ReferenceCache

    ref_path = ref[0]
    cache = ReferenceCache(store, ref[1].removeprefix("model:"), temperature)
    device = _device()
    load: Callable = lambda: load_causal_lm(ref_path).eval().to(device)  # noqa: E731
    cache.fill(load, seqs, pad, batch_size=2 * batch_size, progress=progress)
    return np.array([cache.values[cache.key(s)] for s in seqs], dtype=np.float64)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
