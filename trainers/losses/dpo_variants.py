"""DPO with another link on the same log-ratio margin h: conservative, robust, hinge and length-regularised DPO.

All four read the summed log-probs of policy and frozen reference (need "reference") and use the project's margin
``h = [lpπ(y+|x+) - lpref(y+|x+)] - [lpπ(y-|x-) - lpref(y-|x-)]`` (LOSSES "Notation"). Each owns its knob: cDPO's and
robust DPO's ε are separate fields of separate dataclasses, so neither can silently change the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers.losses.common import implicit_rewards, log_ratio_margin
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid

REFERENCE = frozenset({"reference"})


def _check_beta(beta: float) -> None:
    check(beta > 0, f"beta must be > 0, got {beta}")


@dataclass
class CDPOParams:
    # DPO's default (LOSSES): cDPO changes the target probability, not the scale, so the rows stay comparable.
    beta: float = 0.1
    # Assumed share of flipped labels; 0.1 is a mild noise level (the note leaves ε to the user). ε=0 is plain DPO.
    epsilon: float = 0.1

    def __post_init__(self):
        _check_beta(self.beta)
        check(0.0 <= self.epsilon < 0.5, f"epsilon is a flip rate in [0, 0.5), got {self.epsilon}")


def cdpo_loss(inputs: LossInputs, params: CDPOParams) -> LossOutput:
    """Conservative DPO: DPO with label smoothing ε (the preference label is believed with probability 1-ε).

    Shapes: policy/reference chosen/rejected log-probs [B] -> losses [B].
    ``losses = -(1-ε) log σ(βh) - ε log σ(-βh)``, the cross-entropy to the target [1-ε, ε]; its gradient vanishes at
    ``βh = log((1-ε)/ε)`` instead of at βh = ∞, so the margin stays bounded.
    Source: E. Mitchell, "A note on DPO with noisy preferences & relationship to IPO" (2023, a note with no arXiv id).
    """
    z = params.beta * log_ratio_margin(inputs)
    losses = -(1.0 - params.epsilon) * logsigmoid(z) - params.epsilon * logsigmoid(-z)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected)


@dataclass
class RobustDPOParams:
    # DPO's default (LOSSES), so that ε is the only difference from the `dpo` row.
    beta: float = 0.1
    # Assumed flip rate, set to the noise one believes the labels carry; 0.1 matches cdpo's default for a fair row.
    epsilon: float = 0.1

    def __post_init__(self):
        _check_beta(self.beta)
        # 1/(1-2ε) blows up at ε=0.5: the labels then carry no information.
        check(0.0 <= self.epsilon < 0.5, f"epsilon is a flip rate in [0, 0.5), got {self.epsilon}")


def robust_dpo_loss(inputs: LossInputs, params: RobustDPOParams) -> LossOutput:
    """Provably robust DPO: an unbiased estimate of the clean-label DPO loss under flip rate ε.

    Shapes: policy/reference chosen/rejected log-probs [B] -> losses [B].
    ``losses = [(1-ε)(-log σ(βh)) - ε(-log σ(-βh))] / (1-2ε)``. Its gradient is DPO's minus the constant βε/(1-2ε)
    (per unit h), so it never vanishes and the loss is unbounded below as βh → ∞: the price of unbiasedness.
    Source: S. R. Chowdhury, A. Kini, N. Natarajan, "Provably Robust DPO: Aligning Language Models with Noisy
    Feedback", ICML 2024, arXiv:2403.00409.
    """
    eps = params.epsilon
    z = params.beta * log_ratio_margin(inputs)
    losses = ((1.0 - eps) * -logsigmoid(z) - eps * -logsigmoid(-z)) / (1.0 - 2.0 * eps)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected)


@dataclass
class HingeParams:
    # 1/β is the margin in h (nats). β=0.1 asks for h ≥ 10, and keeps the row on DPO's β grid for comparison.
    beta: float = 0.1

    def __post_init__(self):
        _check_beta(self.beta)


def hinge_loss(inputs: LossInputs, params: HingeParams) -> LossOutput:
    """Hinge loss on the reference-normalised margin (SLiC's rank loss as RSO's "hinge-norm").

    Shapes: policy/reference chosen/rejected log-probs [B] -> losses [B].
    ``losses = relu(1 - βh)``: zero, with zero gradient, once the margin exceeds 1/β.
    Sources: Y. Zhao et al., "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", 2023, arXiv:2305.10425;
    T. Liu et al., "Statistical Rejection Sampling Improves Preference Optimization" (RSO), ICLR 2024,
    arXiv:2309.06657, the hinge-norm loss.
    """
    z = params.beta * log_ratio_margin(inputs)
    losses = torch.relu(1.0 - z)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    # The share of pairs still inside the margin: only they train, so it shows when the hinge has gone quiet.
    active = (z < 1.0).to(z.dtype).detach()
    return LossOutput(losses, chosen, rejected, metrics={"active": active})


@dataclass
class RDPOParams:
    # DPO's default (LOSSES).
    beta: float = 0.1
    # Per-token penalty. A length gap of tens of tokens then shifts the logit by ~0.1-1, the size of βh early in
    # training; Park et al. sweep α per dataset, so treat this as the centre of a sweep, not a tuned value.
    alpha: float = 0.01

    def __post_init__(self):
        _check_beta(self.beta)
        # α < 0 would reward verbosity, the bias R-DPO exists to remove.
        check(self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}")


def r_dpo_loss(inputs: LossInputs, params: RDPOParams) -> LossOutput:
    """Length-regularised DPO (R-DPO).

    Shapes: policy/reference chosen/rejected log-probs [B], chosen/rejected lengths [B] (token counts) -> losses [B].
    ``losses = -log σ(βh - α(|y+| - |y-|))``: a pair whose chosen answer is longer must win by a larger margin.
    Source: R. Park, R. Rafailov, S. Ermon, C. Finn, "Disentangling Length from Quality in Direct Preference
    Optimization", Findings of ACL 2024, arXiv:2403.19159.
    """
    length_term = params.alpha * (inputs.chosen_lengths - inputs.rejected_lengths)
    losses = -logsigmoid(params.beta * log_ratio_margin(inputs) - length_term)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected, metrics={"length_penalty": length_term.detach()})


CDPO = LossSpec(
    name="cdpo",
    fn=cdpo_loss,
    params=CDPOParams,
    needs=REFERENCE,
    summary="conservative DPO: label smoothing ε",
)
ROBUST_DPO = LossSpec(
    name="robust-dpo",
    fn=robust_dpo_loss,
    params=RobustDPOParams,
    needs=REFERENCE,
    summary="provably robust DPO under label noise ε",
)
HINGE = LossSpec(name="hinge", fn=hinge_loss, params=HingeParams, needs=REFERENCE, summary="relu(1 - β h)")
R_DPO = LossSpec(name="r-dpo", fn=r_dpo_loss, params=RDPOParams, needs=REFERENCE, summary="length-regularised DPO")
