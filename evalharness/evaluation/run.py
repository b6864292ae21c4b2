"""`evalharness eval`: the metrics of each checkpoint, held-out pair metrics first, then those of its stored samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalharness.evaluation.common import CheckpointReport, EvalConfig, LazyModel
from evalharness.evaluation.pairs import judge_scores, load_held_out, pair_rows, pair_settings
from evalharness.evaluation.samples import sample_metrics
from evalharness.generate import resolve_target
from evalharness.metrics import CORRELATIONS, METRICS, PAIR_METRICS, REFERENCE_METRICS, SAMPLE_METRICS
from evalharness.store import Store


def evaluate(cfg: EvalConfig, store: Store, progress: bool = True) -> list[CheckpointReport]:
    """Compute the missing metrics of every checkpoint in ``cfg`` and store them; return one report per checkpoint."""
    wanted = list(cfg.metrics or METRICS)
    held_out = None
    if set(wanted) & set(PAIR_METRICS + REFERENCE_METRICS + CORRELATIONS):
        held_out = load_held_out(cfg.data)  # bad data fails here, before anything is loaded or written
    targets = []
    for spec in cfg.checkpoints:
        target, run = resolve_target(spec, store, cfg.reference), _run_of(spec, store)
        if held_out is not None:
            pair_settings(cfg, run)  # a flag that contradicts the run's lengths fails before any checkpoint runs
        targets.append((target, run))
    if held_out is not None and cfg.judge and set(wanted) & set(CORRELATIONS):
        held_out.scores = judge_scores(store, cfg.judge, held_out.pairs)
    reports = []
    for target, run in targets:
        report = CheckpointReport(target.label, target.key)
        policy = LazyModel(target.path)
        if held_out is not None:
            pair_rows(cfg, store, target, run, held_out, wanted, policy, report, progress)
        if set(wanted) & set(SAMPLE_METRICS):
            sample_metrics(cfg, store, target, wanted, policy, report, progress)
        for m in wanted:
            if not any(r.metric == m for r in report.rows):
                report.skipped.setdefault(m, "nothing to compute it from")
        reports.append(report)
    return reports


def _run_of(spec: str, store: Store) -> dict[str, Any] | None:
    if Path(spec).exists() or not Path(store.path).exists():
        return None
    return store.get_run(spec.partition(":")[0])
