"""The built-in losses, registered lazily (``"module:attr"``) through the same entry-point hook as plugins.

One module per family; each module holds pure loss functions, their typed params and a ``LossSpec`` each.
The formulas are in the project's LOSSES document and cited in each docstring.
"""

from __future__ import annotations

# name -> (target, one-line summary)
BUILTIN_LOSSES: dict[str, tuple[str, str]] = {
    # seed losses
    "sft": ("trainers.losses.mle:SFT", "MLE on y+: token-mean negative log-likelihood"),
    "dpo": ("trainers.losses.dpo:DPO", "-log σ(β h), the DPO loss"),
    "ipo": ("trainers.losses.dpo:IPO", "(h - 1/(2β))², the IPO loss"),
    "unlikelihood": ("trainers.losses.unlikelihood:UNLIKELIHOOD", "NLL(y+) - β·mean log(1 - π(y-_t)), token level"),
    "exmate": ("trainers.losses.unlikelihood:EXMATE", "NLL(y+) + β·exp(-NLL(y-)), ExMATE"),
    "sr-dpo": ("trainers.losses.selfrefine:SR_DPO", "DPO with a prompt-augmented self-refinement margin"),
    "sr-ipo": ("trainers.losses.selfrefine:SR_IPO", "IPO with a prompt-augmented self-refinement margin"),
    "e-dpo": ("trainers.losses.edpo:E_DPO", "ε-DPO: per-pair β from a logit-perturbation test"),
    "exo-pref": ("trainers.losses.exo:EXO_PREF", "EXO on pairwise preferences (reverse KL, K=2)"),
    "exo-rw": ("trainers.losses.exo:EXO_RW", "EXO with K scored samples: KL(p_f || p_r)"),
    "dpo-rw": ("trainers.losses.exo:DPO_RW", "DPO with K scored samples: cross-entropy to p_r"),
    # baselines
    "cdpo": ("trainers.losses.dpo_variants:CDPO", "conservative DPO: label smoothing ε"),
    "robust-dpo": ("trainers.losses.dpo_variants:ROBUST_DPO", "provably robust DPO under label noise ε"),
    "hinge": ("trainers.losses.dpo_variants:HINGE", "relu(1 - β h)"),
    "r-dpo": ("trainers.losses.dpo_variants:R_DPO", "length-regularised DPO"),
    "simpo": ("trainers.losses.reference_free:SIMPO", "reference-free, length-normalised margin with γ"),
    "cpo": ("trainers.losses.reference_free:CPO", "reference-free DPO plus λ·NLL(y+)"),
    "orpo": ("trainers.losses.reference_free:ORPO", "NLL(y+) minus λ·log σ(log-odds ratio)"),
    "rrhf": ("trainers.losses.reference_free:RRHF", "ranking hinge on length-normalised log-probs plus NLL"),
    "slic-hf": ("trainers.losses.reference_free:SLIC_HF", "hinge with margin δ on log-probs plus λ·NLL"),
    "kto": ("trainers.losses.kto:KTO", "Kahneman-Tversky optimisation on pairs split into desirable/undesirable"),
    "bco-pair": ("trainers.losses.kto:BCO_PAIR", "binary classifier optimisation on pairs, running reward shift"),
    "beta-dpo": ("trainers.losses.adaptive:BETA_DPO", "β-DPO: batch-level β from a momentum margin estimate"),
    "tr-dpo": ("trainers.losses.adaptive:TR_DPO", "trust-region DPO: the reference follows the policy"),
    "bradley-terry": ("trainers.losses.reward_model:BRADLEY_TERRY", "trains a scalar reward model"),
}


def register(registry) -> None:
    """The entry-point hook for the built-in losses."""
    for name, (target, summary) in BUILTIN_LOSSES.items():
        registry.add(name, target, summary=summary)
