"""Information difference and gradient difference (seed 000 §4.2, §6.1, Fig. 3).

Per pair, with f = P(y|x) the probability mass of a response:

    information difference   |f+ - f-|                       (Def. 4.1), sequence form f = Π_t P(y_t|x, y_<t) in
                                                               float64 (it underflows for long texts, as Fig. 3a/b
                                                               shows: < 1e-26), and per-token form f = exp(mean_t log P)
    gradient difference      ||P(·|x+, y+_<t) - P(·|x-, y-_<t)||_p   per time step t (Def. 4.2 / Lemma 4.1)

and whether y+_t == y-_t at each step (literal similarity, §4.1). Step t pairs the t-th response token of y+ with the
t-th of y-; steps past the shorter response have no partner and are left out. The same quantities are measured for a
randomly initialised copy of the model (seed 000 compares pretrained and random T5s).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from evalharness.diagnose import common
from evalharness.diagnose.common import Row, Unit
from evalharness.diagnose.runner import Job, Plan, execute
from trainers.spec import check

KIND = "information-difference"
DEFAULT_LIMIT = 64


@dataclass(frozen=True)
class InformationSettings(common.Encoding):
    # Def. 4.2 leaves p open; 2 (Euclidean) is the usual norm of a difference of distributions. 1 gives twice the
    # total-variation distance.
    p: float = 2.0
    # Seed 000 Fig. 3 sets pretrained against randomly initialised weights of the same architecture.
    random_init: bool = True
    # Of the random initialisation. Not 0: the tiny test models are built from seed 0, and their "random copy" would
    # be the very same weights.
    seed: int = 1

    def __post_init__(self):
        super().__post_init__()
        check(self.p >= 1, f"p must be >= 1 (a norm), got {self.p}")


@dataclass
class Differences:
    """Per pair [B] and per aligned step (flattened) values of one batch or a whole dataset."""

    logp_pos: list[float] = dataclasses.field(default_factory=list)
    logp_neg: list[float] = dataclasses.field(default_factory=list)
    len_pos: list[int] = dataclasses.field(default_factory=list)
    len_neg: list[int] = dataclasses.field(default_factory=list)
    step_pair: list[int] = dataclasses.field(default_factory=list)  # index of the pair a step belongs to
    step_t: list[int] = dataclasses.field(default_factory=list)  # 1-based time step
    step_diff: list[float] = dataclasses.field(default_factory=list)  # ||P+_t - P-_t||_p
    step_same: list[bool] = dataclasses.field(default_factory=list)  # y+_t == y-_t

    @property
    def info_seq(self) -> list[float]:
        """|Π P(y+) - Π P(y-)| in float64 (exp of summed log-probs)."""
        return [abs(math.exp(a) - math.exp(b)) for a, b in zip(self.logp_pos, self.logp_neg)]

    @property
    def info_token(self) -> list[float]:
        """|exp(lp+/T+) - exp(lp-/T-)|: the per-token geometric-mean form (LOSSES' agility form)."""
        return [abs(math.exp(a / ta) - math.exp(b / tb))
                for a, b, ta, tb in zip(self.logp_pos, self.logp_neg, self.len_pos, self.len_neg)]


def differences(model, pairs, pad: int, p: float = 2.0, batch_size: int = 4) -> Differences:
    """Information and gradient differences of ``pairs`` (PairExamples) under ``model``.

    One concatenated forward per batch (chosen rows then rejected rows, as training does); probabilities in float32,
    norms and products in float64.
    """
    import torch

    from evalharness.scoring import sequence_logps

    out = Differences()
    offset = 0
    for batch in common.chunks(pairs, batch_size):
        b = len(batch)
        with torch.no_grad():
            fwd = sequence_logps(model, [ex.chosen for ex in batch] + [ex.rejected for ex in batch], pad,
                                 keep_logits=True)
        for i in range(b):
            pos_idx, neg_idx = fwd.mask[i].nonzero().squeeze(-1), fwd.mask[b + i].nonzero().squeeze(-1)
            n = min(len(pos_idx), len(neg_idx))
            probs_pos = torch.softmax(fwd.logits[i, pos_idx[:n]].float(), -1).double()
            probs_neg = torch.softmax(fwd.logits[b + i, neg_idx[:n]].float(), -1).double()
            diff = torch.linalg.vector_norm(probs_pos - probs_neg, ord=p, dim=-1)
            same = fwd.labels[i, pos_idx[:n]] == fwd.labels[b + i, neg_idx[:n]]
            out.logp_pos.append(float(fwd.summed[i]))
            out.logp_neg.append(float(fwd.summed[b + i]))
            out.len_pos.append(len(pos_idx))
            out.len_neg.append(len(neg_idx))
            out.step_pair += [offset + i] * n
            out.step_t += list(range(1, n + 1))
            out.step_diff += diff.tolist()
            out.step_same += same.tolist()
        offset += b
    return out


def rows_of(d: Differences, ids: list[str]) -> list[Row]:
    """The stored form: per-pair and per-step arrays plus the summary statistics the table shows."""
    same = [x for x, s in zip(d.step_diff, d.step_same) if s]
    differ = [x for x, s in zip(d.step_diff, d.step_same) if not s]
    first = [x for x, t in zip(d.step_diff, d.step_t) if t == 1]
    info_seq, info_token = d.info_seq, d.info_token
    return [
        Row("pairs", len(ids), {"id": ids, "logp_pos": d.logp_pos, "logp_neg": d.logp_neg, "len_pos": d.len_pos,
                                "len_neg": d.len_neg, "info_seq": info_seq, "info_token": info_token}),
        Row("steps", len(d.step_t), {"pair": d.step_pair, "t": d.step_t, "grad_diff": d.step_diff,
                                     "same": d.step_same}),
        common.ci_row("info_seq/mean", info_seq),
        Row("info_seq/median", _median(info_seq)),
        common.ci_row("info_token/mean", info_token),
        Row("info_token/median", _median(info_token)),
        common.ci_row("grad_diff/mean", d.step_diff),
        common.ci_row("grad_diff/first_step", first),
        common.ci_row("grad_diff/same", same),
        common.ci_row("grad_diff/differ", differ),
        Row("literal_same/share", len(same) / len(d.step_same) if d.step_same else None, {"n": len(d.step_same)}),
    ]


def _median(values: list[float]) -> float | None:
    import numpy as np

    return float(np.median(values)) if values else None


def random_copy(model, seed: int):
    """A model of the same config with freshly initialised weights (drawn from ``seed`` alone)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
    return fresh.eval().requires_grad_(False).to(common.device())


def run(cfg: common.DiagnoseConfig, store) -> common.Report:
    settings = common.bind_settings(InformationSettings, cfg.settings, "information")
    examples, dataset = common.load_pairs(cfg, DEFAULT_LIMIT)
    targets = common.resolve_targets(cfg.checkpoints, store, cfg.reference)
    base = {k: v for k, v in common.settings_dict(settings).items() if k not in ("random_init", "seed")}
    variants = [("pretrained", {})] + ([("random", {"seed": settings.seed})] if settings.random_init else [])
    notes: list[str] = []

    def jobs():
        for target in targets:
            models = common.TargetModels(target)
            for weights, extra in variants:
                compute = functools.partial(_compute, models, weights, examples, settings, cfg.batch_size, notes)
                yield Job(Unit(KIND, target.key, dataset, {**base, "weights": weights, **extra}), compute,
                          (target.label, weights))

    return execute(Plan("information", jobs(), render_table, render_figure, lambda _: notes), store, cfg.out)


def _compute(models: common.TargetModels, weights: str, examples, settings: InformationSettings, batch_size: int,
             notes: list[str]) -> list[Row]:
    pairs, skipped = common.encode_pairs(examples, models.tokenizer, settings)
    if skipped and weights == "pretrained":
        notes.append(f"{models.target.label}: {skipped} pairs skipped (the prompt filled max_length)")
    model = models.policy if weights == "pretrained" else random_copy(models.policy, settings.seed)
    d = differences(model, pairs, models.pad, settings.p, batch_size)
    return rows_of(d, [ex.id for ex in pairs])


def render_table(results) -> str:
    headers = ["checkpoint", "weights", "pairs", "|f+-f-| seq (median)", "|f+-f-| token (median)",
               "||ΔP|| t=1", "||ΔP|| y+=y-", "||ΔP|| y+!=y-", "share y+_t=y-_t"]
    body = []
    for label, weights, rows in results:
        body.append([label, weights, rows["pairs"].value, rows["info_seq/median"].value,
                     rows["info_token/median"].value, rows["grad_diff/first_step"].value,
                     rows["grad_diff/same"].value, rows["grad_diff/differ"].value, rows["literal_same/share"].value])
    return common.format_table(headers, body)


def render_figure(results, out: str, parts) -> str:
    """Fig. 3 of seed 000: (a) sequence-form and (b) per-token information differences per pair (log scale), (c) the
    mean gradient difference per time step, all steps solid and steps with y+_t == y-_t dashed."""
    import numpy as np

    fig, axes = common.new_figure(3)
    ax_seq, ax_tok, ax_steps = axes[0]
    floor = 1e-300  # an exact zero (identical pairs) is drawn at the floor of the log axis
    rng = np.random.default_rng(0)
    names = [f"{label}\n{weights}" for label, weights, _ in results]
    for i, (_, _, rows) in enumerate(results):
        for ax, key in ((ax_seq, "info_seq"), (ax_tok, "info_token")):
            y = np.maximum(np.asarray(common.nan_if_none(rows["pairs"].data[key])), floor)
            ax.scatter(i + rng.uniform(-0.15, 0.15, size=len(y)), y, s=8, alpha=0.6)
        steps = rows["steps"].data
        t, diff, same = (np.asarray(common.nan_if_none(steps[k])) for k in ("t", "grad_diff", "same"))
        if len(t):
            line = None
            for mask, style in ((np.ones_like(t, dtype=bool), "-"), (same.astype(bool), "--")):
                ts = np.unique(t[mask])
                if len(ts):
                    means = [np.nanmean(diff[mask & (t == s)]) for s in ts]
                    kw = {"color": line.get_color()} if line is not None else {}
                    (drawn,) = ax_steps.plot(ts, means, style, label=names[i].replace("\n", " ") +
                                             (" (y+=y-)" if style == "--" else ""), **kw)
                    line = line or drawn
    for ax, title in ((ax_seq, "(a) |f+ - f-|, f = Π_t P(y_t)"), (ax_tok, "(b) |f+ - f-|, f = exp(mean log P)")):
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_title(title, fontsize=9)
    ax_steps.set_xlabel("time step t")
    ax_steps.set_ylabel("mean ||P(·|x+,y+<t) - P(·|x-,y-<t)||")
    ax_steps.set_title("(c) gradient difference per step", fontsize=9)
    if ax_steps.lines:
        ax_steps.legend(fontsize=6)
    return common.save_figure(fig, out, "information", parts, results[0][0] if results else "")
