"""Gradient decomposition on the logits (seed 000 §5, eq. 10-18).

For a batch of pairs and any registered pairwise loss, autograd gives ∂L/∂g, the gradient of the loss on the logits
g of every response step of y+ and of y-. Seed 000 reads it as an update on logits shared by the two sides (it assumes
∂g+/∂θ ≈ ∂g-/∂θ, §5.1) and drops the minus sign to look at gradient ascent, so per aligned step t this module reports

    G_t(z) = -(∂L/∂g+_t(z) + ∂L/∂g-_t(z))          (positive: the update raises the logit of token z)

at z = y+_t, at z = y-_t, and over all other tokens (their sum and their L1 norm), split by steps where
y+_t != y-_t (eq. 10-15) and where y+_t == y-_t (eq. 16-18). Step t pairs the t-th response token of y+ with the t-th
of y-; steps past the shorter response have only one side ("chosen-only", "rejected-only").

What the table shows on real data: DPO's G is β σ(-βh)(P-_t(z) - P+_t(z)) at a step where y+_t == y-_t, so it
vanishes wherever the two contexts give the same next-token distribution (the shared prefix of a pair, where the
information difference is ~0), while ExMATE's does not (eq. 18) and stays bounded by 1/T+ + β/T- per token. (Seed 000's
exploding unlikelihood gradient, β/(1 - P), is with respect to the probability; on the logits the factor P/(1 - P)
meets e_y - P, whose mass off y-_t is 1 - P, so unlikelihood's logit gradient stays below 1/T+ + β/T- as well.)

The loss is evaluated exactly as the training loop does (``trainers.loop.build_inputs``, branching on the loss's
declared needs); the model runs without a graph and its logits are handed back as leaves, so autograd stops there.
The gradient is that of Σ_i loss_i (the loop's batch mean times the batch size): per pair, its own loss's gradient.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

from evalharness.config import ConfigError
from evalharness.diagnose import common
from evalharness.diagnose.common import Row, Unit
from evalharness.diagnose.runner import Job, Plan, execute
from trainers.spec import check

KIND = "gradient"
DEFAULT_LIMIT = 16
STEP_KINDS = ("differ", "same", "chosen-only", "rejected-only")
# What the decomposition can feed: pairs scored token by token. K-sample and reward-head losses are another shape.
UNSUPPORTED_NEEDS = frozenset({"k_samples", "rewards", "reward_head"})
DEFAULT_LOSSES = ("dpo", "unlikelihood", "exmate")  # the three seed 000 analyses
REFERENCE_NEEDS = frozenset({"reference", "reference_logits", "moving_reference", "prompt_augmented"})


@dataclass(frozen=True)
class GradientSettings(common.Encoding):
    temperature: float = 1.0  # logits divided by τ, as the loop's logit_temperature (EXO trains at 0.8)

    def __post_init__(self):
        super().__post_init__()
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


@dataclass
class Records:
    """One entry per response step (flattened over pairs) and one per pair."""

    pair: list[int] = field(default_factory=list)
    t: list[int] = field(default_factory=list)  # 1-based
    kind: list[str] = field(default_factory=list)  # one of STEP_KINDS
    g_pos: list[float] = field(default_factory=list)  # G_t(y+_t); NaN at rejected-only steps
    g_neg: list[float] = field(default_factory=list)  # G_t(y-_t); NaN at chosen-only steps
    other_sum: list[float] = field(default_factory=list)  # Σ_z G_t(z) over z ∉ {y+_t, y-_t}
    other_l1: list[float] = field(default_factory=list)  # Σ_z |G_t(z)| over the same z
    max_abs: list[float] = field(default_factory=list)  # max_z |G_t(z)|
    l1: list[float] = field(default_factory=list)  # Σ_z |G_t(z)|
    pair_loss: list[float] = field(default_factory=list)
    pair_info: list[float] = field(default_factory=list)  # |exp(lp+/T+) - exp(lp-/T-)|, the per-token form
    pair_l1: list[float] = field(default_factory=list)  # Σ_t Σ_z |G_t(z)| over all the pair's steps

    def extend(self, other: Records) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


def decompose(ascent_pos, ascent_neg, y_pos, y_neg, pair: int = 0) -> Records:
    """Split one pair's ascent gradients into the seed's parts.

    Shapes: ascent_pos [T+, V] = -∂L/∂g+ at the steps predicting y+ (y_pos [T+] long), ascent_neg [T-, V] likewise.
    """
    import torch

    out = Records()
    n = min(len(y_pos), len(y_neg))
    parts = [(ascent_pos[:n] + ascent_neg[:n], y_pos[:n], y_neg[:n], None),
             (ascent_pos[n:], y_pos[n:], None, "chosen-only"),
             (ascent_neg[n:], None, y_neg[n:], "rejected-only")]
    start = [0, n, n]
    for (g, yp, yn, kind), t0 in zip(parts, start):
        if g.shape[0] == 0:
            continue
        g = g.double()
        rest = g.clone()
        at = {}
        for name, y in (("pos", yp), ("neg", yn)):
            if y is None:
                at[name] = torch.full((g.shape[0],), math.nan, dtype=g.dtype)
            else:
                at[name] = g.gather(1, y[:, None])[:, 0]
                rest.scatter_(1, y[:, None], 0.0)
        kinds = [kind] * g.shape[0] if kind else ["same" if s else "differ" for s in (yp == yn).tolist()]
        out.pair += [pair] * g.shape[0]
        out.t += list(range(t0 + 1, t0 + g.shape[0] + 1))
        out.kind += kinds
        out.g_pos += at["pos"].tolist()
        out.g_neg += at["neg"].tolist()
        out.other_sum += rest.sum(1).tolist()
        out.other_l1 += rest.abs().sum(1).tolist()
        out.max_abs += g.abs().max(1).values.tolist()
        out.l1 += g.abs().sum(1).tolist()
    return out


class LogitTap:
    """Stands in for the model in ``build_inputs``: runs it without a graph and returns its logits as leaves.

    Every forward made with gradients enabled appends its leaf to ``leaves`` (the loop's one policy forward);
    forwards under ``no_grad`` (prompt-augmented scores) return plain logits.
    """

    def __init__(self, model):
        self.model = model
        self.leaves = []

    def parameters(self):
        return self.model.parameters()

    def __call__(self, **kwargs):
        import torch

        with torch.no_grad():
            logits = self.model(**kwargs).logits.detach().float()
        if torch.is_grad_enabled():
            logits.requires_grad_(True)
            self.leaves.append(logits)
        return SimpleNamespace(logits=logits)


def batch_gradients(spec, params, model, reference, batch, pad: int, temperature: float = 1.0) -> Records:
    """The decomposition of one batch of PairExamples under ``spec`` (a LossSpec) with bound ``params``."""
    import torch

    from trainers.loop import build_inputs
    from trainers.setup import Prepared

    tap = LogitTap(model)
    device = next(model.parameters()).device
    prepared = Prepared(accelerator=SimpleNamespace(device=device), model=tap, reference=reference, tokenizer=None,
                        optimizer=None, scheduler=None, examples=[], lengths=[], pad_id=pad, cache=None,
                        cache_report=None, truncated=0, skipped=0)
    with torch.enable_grad():
        inputs, _ = build_inputs(spec.needs, batch, prepared, spec.initial_state(params), temperature)
        out = spec.fn(inputs, params)
        leaf = tap.leaves[0]  # [2B, L, V]: chosen rows then rejected rows, as the loop concatenates them
        (grad,) = torch.autograd.grad(out.losses.sum(), leaf, allow_unused=True)
    grad = torch.zeros_like(leaf) if grad is None else grad
    ascent = -grad[:, :-1]  # sequence_logps drops the last position: position j predicts token j+1
    b = len(batch)
    seqs = [ex.chosen for ex in batch] + [ex.rejected for ex in batch]
    records = Records()
    for i in range(b):
        sides = []
        for row in (i, b + i):
            p, r = len(seqs[row].prompt), len(seqs[row].response)
            sides.append((ascent[row, p - 1 : p - 1 + r], torch.tensor(seqs[row].response, device=device)))
        (g_pos, y_pos), (g_neg, y_neg) = sides
        rec = decompose(g_pos.cpu(), g_neg.cpu(), y_pos.cpu(), y_neg.cpu(), pair=i)
        lp_pos, lp_neg = float(inputs.policy_chosen_logps[i].detach()), float(inputs.policy_rejected_logps[i].detach())
        t_pos, t_neg = float(inputs.chosen_lengths[i]), float(inputs.rejected_lengths[i])
        rec.pair_loss.append(float(out.losses[i].detach()))
        rec.pair_info.append(abs(math.exp(lp_pos / t_pos) - math.exp(lp_neg / t_neg)))
        rec.pair_l1.append(sum(rec.l1))
        records.extend(rec)
    return records


def gradient_records(spec, params, model, reference, pairs, pad: int, batch_size: int = 4,
                     temperature: float = 1.0) -> Records:
    """``batch_gradients`` over all ``pairs``, pair indices running over the whole list."""
    records = Records()
    for start in range(0, len(pairs), batch_size):
        rec = batch_gradients(spec, params, model, reference, pairs[start : start + batch_size], pad, temperature)
        rec.pair = [start + i for i in rec.pair]
        records.extend(rec)
    return records


def summary_rows(rec: Records, ids: list[str]) -> list[Row]:
    rows = [
        Row("pairs", len(ids), {"id": ids, "loss": rec.pair_loss, "info_token": rec.pair_info, "l1": rec.pair_l1}),
        Row("steps", len(rec.t), {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)
                                  if not f.name.startswith("pair_")}),
    ]
    for kind in STEP_KINDS:
        idx = [i for i, k in enumerate(rec.kind) if k == kind]
        if not idx:
            continue
        for name in ("g_pos", "g_neg", "other_sum", "other_l1"):
            values = [getattr(rec, name)[i] for i in idx]
            rows.append(common.ci_row(f"{kind}/{name}", values))
        rows.append(Row(f"{kind}/max_abs", max(rec.max_abs[i] for i in idx), {"n": len(idx)}))
    return rows


def bind_losses(expressions: list[str], overrides: dict) -> list[tuple[str, object, object]]:
    """(expression, LossSpec, params) per --loss item; every override must be used by some loss (no silent typos)."""
    from evalharness.plugins import registry
    from trainers.recipes import build_stage, check_overrides, parse_stages

    if not expressions:
        raise ConfigError("give at least one --loss")
    check_overrides(" -> ".join(expressions), overrides)
    bound = []
    for expr in expressions:
        stages = parse_stages(expr)
        if len(stages) != 1:
            raise ConfigError(f"--loss {expr!r}: a recipe of stages is several runs; give one stage per loss")
        names = {n for _, n in stages[0]}
        fields = {f.name for n in names for f in dataclasses.fields(registry("losses").get(n).params)}
        own = {k: v for k, v in overrides.items()
               if (k.rpartition(".")[0] in names) or ("." not in k and k in fields)}
        spec, params = build_stage(stages[0], own)
        unsupported = spec.needs & UNSUPPORTED_NEEDS
        if unsupported:
            raise ConfigError(f"loss {expr!r} needs {', '.join(sorted(unsupported))}: the gradient decomposition "
                              "covers pairwise losses over token log-probs")
        bound.append((expr, spec, params))
    return bound


def params_identity(params) -> object:
    if hasattr(params, "parts"):  # a weighted sum: each part's weight, loss name and params
        return [[p.weight, p.spec.name, dataclasses.asdict(p.params)] for p in params.parts]
    return dataclasses.asdict(params)


def run(cfg: common.DiagnoseConfig, store) -> common.Report:
    fields = {f.name for f in dataclasses.fields(GradientSettings)}
    settings = common.bind_settings(GradientSettings, {k: v for k, v in cfg.settings.items() if k in fields},
                                    "gradients")
    losses = bind_losses(list(cfg.losses or DEFAULT_LOSSES), {k: v for k, v in cfg.settings.items() if k not in fields})
    examples, dataset = common.load_pairs(cfg, DEFAULT_LIMIT)
    targets = common.resolve_targets(cfg.checkpoints, store, cfg.reference)
    notes: list[str] = []

    def jobs():
        for target in targets:
            models = common.TargetModels(target)
            for expr, spec, params in losses:
                uses_ref = bool(spec.needs & REFERENCE_NEEDS)
                unit = Unit(KIND, target.key, dataset, {
                    **common.settings_dict(settings), "loss": expr, "params": params_identity(params),
                    "reference": models.reference_key if uses_ref else None})
                compute = functools.partial(_compute, models, spec, params, examples, settings, cfg.batch_size, notes)
                yield Job(unit, compute, (target.label, expr))

    plan = Plan("gradients", jobs(), render_table, render_figure, lambda results: information_notes(results) + notes)
    return execute(plan, store, cfg.out)


def _compute(models: common.TargetModels, spec, params, examples, settings: GradientSettings, batch_size: int,
             notes: list[str]) -> list[Row]:
    prefix = params.augment_prefix() if "prompt_augmented" in spec.needs else None
    pairs, skipped = common.encode_pairs(examples, models.tokenizer, settings, prefix)
    if skipped:
        notes.append(f"{models.target.label}: {skipped} pairs skipped (the prompt filled max_length)")
    reference = models.reference if spec.needs & REFERENCE_NEEDS else None
    rec = gradient_records(spec, params, models.policy, reference, pairs, models.pad, batch_size, settings.temperature)
    return summary_rows(rec, [ex.id for ex in pairs])


def render_table(results) -> str:
    headers = ["checkpoint", "loss", "steps", "n", "G(y+_t)", "G(y-_t)", "Σ G(others)", "Σ|G(others)|", "max|G|"]
    body = []
    for label, expr, rows in results:
        for kind in STEP_KINDS:
            if f"{kind}/g_pos" not in rows:
                continue
            body.append([label, expr, kind, rows[f"{kind}/g_pos"].data["n"] or rows[f"{kind}/g_neg"].data["n"],
                         rows[f"{kind}/g_pos"].value, rows[f"{kind}/g_neg"].value, rows[f"{kind}/other_sum"].value,
                         rows[f"{kind}/other_l1"].value, rows[f"{kind}/max_abs"].value])
    return common.format_table(headers, body)


def information_notes(results) -> list[str]:
    """One line per checkpoint: the median per-token information difference of the pairs the table is about."""
    import numpy as np

    seen, lines = set(), []
    for label, _, rows in results:
        if label not in seen:
            seen.add(label)
            info = common.nan_if_none(rows["pairs"].data["info_token"])
            lines.append(f"{label}: median |f+ - f-| (per-token form) over {len(info)} pairs = "
                         f"{common.fmt(float(np.median(info)) if info else None)}; G = -∂L/∂logit on logits shared "
                         "by y+ and y- (seed 000 §5)")
    return lines


def render_figure(results, out: str, parts) -> str:
    """(a) mean G at y+_t, y-_t and Σ others per loss where y+_t != y-_t; (b) the same where y+_t == y-_t;
    (c) per pair, Σ|G| against the per-token information difference."""
    import numpy as np

    fig, axes = common.new_figure(3)
    labels = [f"{label}\n{expr}" if len({r[0] for r in results}) > 1 else expr for label, expr, _ in results]
    x = np.arange(len(results))
    for ax, kind, title in ((axes[0][0], "differ", "(a) steps with y+_t != y-_t"),
                            (axes[0][1], "same", "(b) steps with y+_t == y-_t")):
        names = ("g_pos", "g_neg", "other_sum") if kind == "differ" else ("g_pos", "other_sum")
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            key = f"{kind}/{name}"
            means = [rows[key].value if key in rows and rows[key].value is not None else np.nan
                     for _, _, rows in results]
            lows = [rows[key].data.get("ci_low") if key in rows else None for _, _, rows in results]
            highs = [rows[key].data.get("ci_high") if key in rows else None for _, _, rows in results]
            err = np.array([[m - lo if lo is not None else 0 for m, lo in zip(means, lows)],
                            [hi - m if hi is not None else 0 for m, hi in zip(means, highs)]])
            legend = {"g_pos": "G(y+_t)" if kind == "differ" else "G(y_t)", "g_neg": "G(y-_t)",
                      "other_sum": "Σ G(others)"}[name]
            ax.bar(x + (j - (len(names) - 1) / 2) * width, means, width, yerr=np.nan_to_num(err), label=legend)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mean -∂L/∂logit (95% CI)")
        ax.legend(fontsize=7)
    ax = axes[0][2]
    for label, (_, _, rows) in zip(labels, results):
        info = np.maximum(np.asarray(common.nan_if_none(rows["pairs"].data["info_token"])), 1e-12)
        ax.scatter(info, common.nan_if_none(rows["pairs"].data["l1"]), s=10, alpha=0.7, label=label.replace("\n", " "))
    ax.set_xscale("log")
    ax.set_xlabel("|f+ - f-| (per-token form)")
    ax.set_ylabel("Σ_t Σ_z |G_t(z)| per pair")
    ax.set_title("(c) gradient size against information difference", fontsize=9)
    if results:
        ax.legend(fontsize=7)
    return common.save_figure(fig, out, "gradients", parts, results[0][0] if results else "")
