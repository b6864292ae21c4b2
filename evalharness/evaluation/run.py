"""`evalharness eval`: the metrics of each checkpoint, held-out pair metrics first, then those of its stored samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalharness.evaluation import pairs as P
from evalharness.evaluation.common import CheckpointReport, EvalConfig, LazyModel
from evalharness.evaluation.samples import sample_metrics
from evalharness.generate import resolve_target
from evalharness.hashing import canonical_json
from evalharness.metrics import CORRELATIONS, METRICS, PAIR_METRICS, REFERENCE_METRICS, SAMPLE_METRICS
from evalharness.store import Store


def evaluate(cfg: EvalConfig, store: Store, progress: bool = True) -> list[CheckpointReport]:
    """Compute the missing metrics of every checkpoint in ``cfg`` and store them; return one report per checkpoint."""
    wanted = list(cfg.metrics or METRICS)
    with_pairs = bool(set(wanted) & set(PAIR_METRICS + REFERENCE_METRICS + CORRELATIONS))
    resolved = [(resolve_target(spec, store, cfg.reference), _run_of(spec, store)) for spec in cfg.checkpoints]
    # A plain model beside runs is measured as they are (their data, split and lengths), so one board compares
    # like with like; runs that disagree leave it the defaults, which the rows' settings then say.
    shared = P.shared_training([run for _, run in resolved if run])
    held_outs: dict[str, P.HeldOut] = {}
    targets = []
    for target, run in resolved:
        held, trained = None, P.trained_config(run) if run else shared
        if with_pairs:  # bad data, a share beyond the run's or lengths that contradict fail before anything runs
            data = P.held_out_data(cfg, trained, f"run {target.label}" if run else "the runs beside it")
            P.pair_settings(cfg, trained, data.eval_fraction)
            held = held_outs.get(canonical_json(data))
            if held is None:
                held = held_outs[canonical_json(data)] = P.load_held_out(data)
        targets.append((target, run, held, trained))
    if cfg.judge and set(wanted) & set(CORRELATIONS):
        for held in held_outs.values():
            held.scores = P.judge_scores(store, cfg.judge, held.pairs)
    reports = []
    for target, run, held, trained in targets:
        report = CheckpointReport(target.label, target.key)
        policy = LazyModel(target.path)
        if held is not None:
            P.pair_rows(cfg, store, target, run, held, wanted, policy, report, progress, trained)
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
