"""ε-DPO's logit-monotonicity classes and their implicit reward margins (seed 003 §3.2-3.3, Fig. 4a).

For a checkpoint trained with β (a DPO policy), the logit z = log π(y+|x+) - log π(y-|x-) is estimated at the
perturbed β⁻ = β/(1+ε) and β⁺ = β/(1-ε) from the policy's and the reference's logits, exactly as the ε-DPO loss does
(``trainers.losses.edpo``: log-softmax of (1+ε)fπ - ε fref and of (1-ε)fπ + ε fref). A pair's class:

    decreasing  z(β⁻) > z(β) > z(β⁺)   z falls as β grows (seed 003 condition (1); ε-DPO relaxes: β̃ = β/(1+ε))
    increasing  z(β⁻) < z(β) < z(β⁺)   z rises as β grows (condition (2); ε-DPO tightens: β̃ = β/(1-ε))
    neither     otherwise

and its implicit reward margin β h, h = [lpπ(y+) - lpref(y+)] - [lpπ(y-) - lpref(y-)], with the checkpoint's β. Seed
003 finds the increasing class with the low-confidence (small-margin) pairs, the opposite of β-DPO's choice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from evalharness.diagnose import common
from evalharness.diagnose.common import Row, Unit
from evalharness.diagnose.runner import Job, Plan, execute
from trainers.spec import check

KIND = "monotonicity"
DEFAULT_LIMIT = 64
CLASSES = ("increasing", "decreasing", "neither")
SIGN_OF = {"decreasing": 1.0, "increasing": -1.0, "neither": 0.0}  # edpo.monotonicity_sign's convention


@dataclass(frozen=True)
class MonotonicitySettings(common.Encoding):
    epsilon: float = 0.01  # seed 003's default perturbation (Table 3)
    # The β the margin is measured with. None: the run's own β (its params), else 0.1, DPO's default.
    beta: float | None = None
    temperature: float = 1.0  # logits divided by τ, as the run trained

    def __post_init__(self):
        super().__post_init__()
        check(0 < self.epsilon < 1, f"epsilon must be in (0, 1), got {self.epsilon}")
        check(self.beta is None or self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


@dataclass
class PairClasses:
    sign: list[float]  # s per pair: +1 decreasing, -1 increasing, 0 neither
    z_minus: list[float]  # z at β/(1+ε)
    z: list[float]
    z_plus: list[float]  # z at β/(1-ε)
    h: list[float]  # the log-ratio margin (unscaled)


def classify(policy, reference, pairs, pad: int, epsilon: float, batch_size: int = 4,
             temperature: float = 1.0) -> PairClasses:
    """The monotonicity class and margin of each PairExample (float32 logits, as the loss computes them)."""
    import torch

    from evalharness.scoring import sequence_logps
    from trainers.losses.edpo import monotonicity_sign, perturbed_logps
    from trainers.spec import LossInputs

    out = PairClasses([], [], [], [], [])
    for batch in common.chunks(pairs, batch_size):
        b = len(batch)
        seqs = [ex.chosen for ex in batch] + [ex.rejected for ex in batch]
        with torch.no_grad():
            pol = sequence_logps(policy, seqs, pad, temperature, keep_logits=True)
            ref = sequence_logps(reference, seqs, pad, temperature, keep_logits=True)
        inputs = LossInputs(
            policy_chosen_logits=pol.logits[:b], policy_rejected_logits=pol.logits[b:],
            reference_chosen_logits=ref.logits[:b], reference_rejected_logits=ref.logits[b:],
            chosen_labels=pol.labels[:b], rejected_labels=pol.labels[b:],
            chosen_mask=pol.mask[:b], rejected_mask=pol.mask[b:],
        )
        sign = monotonicity_sign(inputs, epsilon)  # the loss's own test: the classes are the ones ε-DPO acts on
        sides = [perturbed_logps(inputs.policy_chosen_logits, inputs.reference_chosen_logits, inputs.chosen_labels,
                                 inputs.chosen_mask, epsilon),
                 perturbed_logps(inputs.policy_rejected_logits, inputs.reference_rejected_logits,
                                 inputs.rejected_labels, inputs.rejected_mask, epsilon)]
        (c_lo, c, c_hi), (r_lo, r, r_hi) = sides
        h = (pol.summed[:b] - ref.summed[:b]) - (pol.summed[b:] - ref.summed[b:])
        out.sign += sign.tolist()
        out.z_minus += (c_lo - r_lo).tolist()
        out.z += (c - r).tolist()
        out.z_plus += (c_hi - r_hi).tolist()
        out.h += h.double().tolist()
    return out


def rows_of(pc: PairClasses, ids: list[str], beta: float) -> list[Row]:
    margin = [beta * h for h in pc.h]
    rows = [Row("pairs", len(ids), {"id": ids, "sign": pc.sign, "z_minus": pc.z_minus, "z": pc.z,
                                    "z_plus": pc.z_plus, "margin": margin, "beta": beta})]
    for name in CLASSES:
        members = [m for m, s in zip(margin, pc.sign) if s == SIGN_OF[name]]
        rows.append(Row(f"share/{name}", len(members) / len(ids), {"n": len(members), "of": len(ids)}))
        rows.append(common.ci_row(f"margin/{name}", members))
    rows.append(common.ci_row("margin/all", margin))
    return rows


def checkpoint_beta(store, target: common.Target, settings: MonotonicitySettings) -> float:
    """The β of the margin: the setting, else the run's params' ``beta``, else DPO's default 0.1."""
    if settings.beta is not None:
        return settings.beta
    params = (common.run_of_checkpoint(store, target.key) or {}).get("params")
    beta = params.get("beta") if isinstance(params, dict) else None
    return float(beta) if isinstance(beta, (int, float)) else 0.1


def run(cfg: common.DiagnoseConfig, store) -> common.Report:
    settings = common.bind_settings(MonotonicitySettings, cfg.settings, "monotonicity")
    examples, dataset = common.load_pairs(cfg, DEFAULT_LIMIT)
    targets = common.resolve_targets(cfg.checkpoints, store, cfg.reference)
    notes: list[str] = []

    def jobs():
        for target in targets:
            models = common.TargetModels(target)
            beta = checkpoint_beta(store, target, settings)
            unit = Unit(KIND, target.key, dataset, {**common.settings_dict(settings), "beta": beta,
                                                    "reference": models.reference_key})
            compute = functools.partial(_compute, models, examples, settings, beta, cfg.batch_size, notes)
            yield Job(unit, compute, (target.label, beta))

    table = functools.partial(render_table, epsilon=settings.epsilon)
    return execute(Plan("monotonicity", jobs(), table, render_figure, lambda _: notes), store, cfg.out)


def _compute(models: common.TargetModels, examples, settings: MonotonicitySettings, beta: float, batch_size: int,
             notes: list[str]) -> list[Row]:
    pairs, skipped = common.encode_pairs(examples, models.tokenizer, settings)
    if skipped:
        notes.append(f"{models.target.label}: {skipped} pairs skipped (the prompt filled max_length)")
    pc = classify(models.policy, models.reference, pairs, models.pad, settings.epsilon, batch_size,
                  settings.temperature)
    return rows_of(pc, [ex.id for ex in pairs], beta)


def render_table(results, epsilon: float) -> str:
    headers = ["checkpoint", "β", "ε", "class", "pairs", "share", "margin β·h (95% CI)"]
    body = []
    for label, beta, rows in results:
        for name in CLASSES:
            share = rows[f"share/{name}"]
            body.append([label, beta, epsilon, name, share.data["n"], share.value,
                         common.fmt_ci(rows[f"margin/{name}"].data)])
    return common.format_table(headers, body)


def render_figure(results, out: str, parts) -> str:
    """Fig. 4a of seed 003: mean implicit reward margin per class with 95% CIs, one group per checkpoint; and the
    share of each class."""
    import numpy as np

    fig, axes = common.new_figure(2)
    ax_margin, ax_share = axes[0]
    x = np.arange(len(results))
    labels = [f"{label}\nβ={beta:g}" for label, beta, _ in results]
    width = 0.8 / len(CLASSES)
    bottom = np.zeros(len(results))
    for j, name in enumerate(CLASSES):
        stats = [rows[f"margin/{name}"].data for _, _, rows in results]
        means = np.array([s["mean"] if s.get("mean") is not None else np.nan for s in stats], dtype=float)
        lo = np.array([s["ci_low"] if s.get("ci_low") is not None else np.nan for s in stats], dtype=float)
        hi = np.array([s["ci_high"] if s.get("ci_high") is not None else np.nan for s in stats], dtype=float)
        err = np.nan_to_num(np.vstack([means - lo, hi - means]))
        ax_margin.bar(x + (j - 1) * width, np.nan_to_num(means), width, yerr=err, capsize=3, label=name)
        share = np.array([rows[f"share/{name}"].value for _, _, rows in results], dtype=float)
        ax_share.bar(x, share, 0.6, bottom=bottom, label=name)
        bottom += share
    ax_margin.axhline(0, color="black", linewidth=0.6)
    ax_margin.set_ylabel("implicit reward margin β·h")
    ax_margin.set_title("(a) margin of pairs by logit monotonicity (95% CI)", fontsize=9)
    ax_share.set_ylabel("share of pairs")
    ax_share.set_title("(b) monotonicity classes under the β perturbation", fontsize=9)
    for ax in (ax_margin, ax_share):
        ax.set_xticks(x, labels, fontsize=7)
        ax.legend(fontsize=7)
    return common.save_figure(fig, out, "monotonicity", parts, results[0][0] if results else "")
