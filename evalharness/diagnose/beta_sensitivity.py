"""Sensitivity to β (seed 000 Appendix G, Fig. 7): probability of positives and agility against β over a sweep.

A sweep is a set of finished runs in the store with the same loss, base model, starting point, data and training
settings that differ only in the loss's ``beta`` (read from ``runs.params``). For each run's final checkpoint, on the
pairs given by ``--data``:

    probability of positives   mean_i f+_i,  f = exp(lp(y|x)/T), the per-token geometric-mean probability
    agility                    mean_i (f+_i - f-_i)   (LOSSES' agility; seed 000's "ATE agility")

with 95% bootstrap CIs, plus the raw sequence-probability agility (float64), the mean log-prob margin and the perplexity
of y+. Seed 000 sees ExMATE's probabilities fall and its agility rise as β grows, and DPO's agility fall.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from evalharness.checkpoints import checkpoint_path, locate
from evalharness.config import ConfigError
from evalharness.diagnose import common
from evalharness.diagnose.common import Row, Unit
from evalharness.diagnose.runner import Job, Plan, execute
from evalharness.hashing import canonical_json

KIND = "beta-sensitivity"
DEFAULT_LIMIT = 64


@dataclass(frozen=True)
class BetaSettings(common.Encoding):
    pass


@dataclass
class Member:
    beta: float
    run: dict
    checkpoint: dict  # the run's final checkpoint row
    path: str  # its directory, checked against the weights the run saved


@dataclass
class Sweep:
    loss: str
    base_model: str
    members: list[Member] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.loss} on {self.base_model}"


def _parsed(run: dict) -> dict:
    run = dict(run)
    for key in ("params", "config", "data"):
        if isinstance(run.get(key), str):
            run[key] = json.loads(run[key])
    return run


def sweep_key(run: dict) -> str:
    """Everything that must match within a sweep: the resolved config without its parameters, and the bound
    parameters without β."""
    config = {k: v for k, v in (run["config"] or {}).items() if k != "params"}
    params = {k: v for k, v in (run["params"] or {}).items() if k != "beta"}
    return canonical_json([run["loss"], config, params])


def find_sweeps(store, losses: list[str] | None = None, runs: list[str] | None = None) -> tuple[list[Sweep], list[str]]:
    """(sweeps with at least two β values, notes on runs left out). ``runs`` (ids or names) pick the sweeps that
    contain them; ``losses`` keep sweeps of those losses."""
    notes = []
    finished = [_parsed(r) for r in store.runs() if r["status"] == "finished"]
    wanted = set()
    for name in runs or []:
        found = store.get_run(name)
        if found is None:
            raise ConfigError(f"no run {name!r} in {store.path}")
        wanted.add(found["run_id"])
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in finished:
        if losses and run["loss"] not in losses:
            continue
        if not isinstance(run.get("params"), dict) or not isinstance(run["params"].get("beta"), (int, float)):
            continue  # SFT, weighted sums: no single β
        groups[sweep_key(run)].append(run)
    sweeps = []
    for members in groups.values():
        if wanted and not wanted & {r["run_id"] for r in members}:
            continue
        sweep = Sweep(members[0]["loss"], members[0]["base_model"])
        for run in members:
            finals = [c for c in store.checkpoints(run["run_id"]) if c["is_final"]]
            if not finals or locate(finals[-1], store) is None:
                notes.append(f"run {run['name']}: no final checkpoint on disk; left out")
                continue
            # Other weights in the run's directory are an error before anything is computed, not a quiet left-out.
            path = checkpoint_path(finals[-1], store, f"run {run['name']}")
            sweep.members.append(Member(float(run["params"]["beta"]), run, finals[-1], path))
        sweep.members.sort(key=lambda m: (m.beta, m.run["name"]))
        if len({m.beta for m in sweep.members}) >= 2:
            sweeps.append(sweep)
    if not sweeps:
        raise ConfigError("no sweep found: need at least two finished runs of one loss, base model and training config "
                          "that differ only in beta" + (f" (losses: {', '.join(losses)})" if losses else ""))
    return sorted(sweeps, key=lambda s: s.label), notes


def pair_logps(model, pairs, pad: int, batch_size: int = 4) -> dict[str, list[float]]:
    """Summed log-probs and lengths of y+ and y- for each PairExample."""
    import torch

    from evalharness.scoring import sequence_logps

    out = {"logp_pos": [], "logp_neg": [], "len_pos": [], "len_neg": []}
    for batch in common.chunks(pairs, batch_size):
        b = len(batch)
        with torch.no_grad():
            fwd = sequence_logps(model, [ex.chosen for ex in batch] + [ex.rejected for ex in batch], pad)
        out["logp_pos"] += fwd.summed[:b].double().tolist()
        out["logp_neg"] += fwd.summed[b:].double().tolist()
        out["len_pos"] += fwd.lengths[:b].tolist()
        out["len_neg"] += fwd.lengths[b:].tolist()
    return out


def rows_of(lp: dict[str, list[float]], ids: list[str]) -> list[Row]:
    f_pos = [math.exp(a / t) for a, t in zip(lp["logp_pos"], lp["len_pos"])]
    f_neg = [math.exp(a / t) for a, t in zip(lp["logp_neg"], lp["len_neg"])]
    return [
        Row("pairs", len(ids), {"id": ids, **lp}),
        common.ci_row("positive_prob", f_pos),
        common.ci_row("negative_prob", f_neg),
        common.ci_row("agility", [a - b for a, b in zip(f_pos, f_neg)]),
        common.ci_row("agility_seq", [math.exp(a) - math.exp(b) for a, b in zip(lp["logp_pos"], lp["logp_neg"])]),
        common.ci_row("logp_margin", [a - b for a, b in zip(lp["logp_pos"], lp["logp_neg"])]),
        Row("perplexity", math.exp(-sum(lp["logp_pos"]) / sum(lp["len_pos"])), {"tokens": sum(lp["len_pos"])}),
    ]


def run(cfg: common.DiagnoseConfig, store) -> common.Report:
    settings = common.bind_settings(BetaSettings, cfg.settings, "beta-sensitivity")
    examples, dataset = common.load_pairs(cfg, DEFAULT_LIMIT)
    sweeps, notes = find_sweeps(store, cfg.losses, cfg.checkpoints)

    def jobs():
        for sweep in sweeps:
            for m in sweep.members:
                unit = Unit(KIND, m.checkpoint["checkpoint_id"], dataset, common.settings_dict(settings))
                target = common.Target(m.checkpoint["checkpoint_id"], f"{m.run['name']}:{m.checkpoint['step']}",
                                       m.path, m.path)
                compute = functools.partial(_compute, common.TargetModels(target), examples, settings, cfg.batch_size)
                yield Job(unit, compute, (sweep.label, m.beta, m.run["name"]))

    return execute(Plan("beta-sensitivity", jobs(), render_table, render_figure, lambda _: notes), store, cfg.out)


def _compute(models: common.TargetModels, examples, settings: BetaSettings, batch_size: int) -> list[Row]:
    pairs, _ = common.encode_pairs(examples, models.tokenizer, settings)
    return rows_of(pair_logps(models.policy, pairs, models.pad, batch_size), [ex.id for ex in pairs])


def render_table(results) -> str:
    headers = ["sweep", "β", "run", "pairs", "P(y+) per token (95% CI)", "agility f+ - f- (95% CI)", "ppl(y+)"]
    body = [[label, beta, name, rows["pairs"].value, common.fmt_ci(rows["positive_prob"].data),
             common.fmt_ci(rows["agility"].data), rows["perplexity"].value]
            for label, beta, name, rows in results]
    return common.format_table(headers, body)


def render_figure(results, out: str, parts) -> str:
    """Seed 000 Fig. 7: (a) probability of positives and (b) agility against β (log axis), one line per sweep."""
    import numpy as np

    fig, axes = common.new_figure(2)
    by_sweep = defaultdict(list)
    for label, beta, _, rows in results:
        by_sweep[label].append((beta, rows))
    for ax, name, title in ((axes[0][0], "positive_prob", "(a) probability of positives"),
                            (axes[0][1], "agility", "(b) agility f+ - f-")):
        for label, points in by_sweep.items():
            betas = np.array([b for b, _ in points])
            stats = [rows[name].data for _, rows in points]
            mean = np.array([s["mean"] for s in stats], dtype=float)
            lo = np.array([s["ci_low"] if s.get("ci_low") is not None else np.nan for s in stats], dtype=float)
            hi = np.array([s["ci_high"] if s.get("ci_high") is not None else np.nan for s in stats], dtype=float)
            ax.errorbar(betas, mean, yerr=np.nan_to_num(np.vstack([mean - lo, hi - mean])), marker="o", capsize=3,
                        label=label)
        ax.set_xscale("log")
        ax.set_xlabel("β")
        ax.set_title(title + " (95% CI)", fontsize=9)
        ax.legend(fontsize=7)
    return common.save_figure(fig, out, "beta-sensitivity", parts, results[0][0] if results else "")
