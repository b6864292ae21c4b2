"""Unlikelihood training and ExMATE: MLE on y+ plus a penalty that pushes the probability of y- down (seed 000)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.losses.common import mean_nll
from trainers.spec import LossInputs, LossOutput, LossSpec, check

# The largest float32 below 1 (1 - 2⁻²⁴). Clamping p here bounds -log(1 - p) by 24·log 2 ≈ 16.64 per token.
_P_MAX = float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))


@dataclass(frozen=True)
class UnlikelihoodParams:
    # Seed 000 tunes β over {0.05, 0.1, 0.5, 1, 5} and reports no single default; 1.0 is the α of the original
    # unlikelihood paper (Welleck et al. 2020) and the β of seed 000's Figure 1.
    beta: float = 1.0

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")


def log_one_minus_p(token_logps: Tensor) -> Tensor:
    """log(1 - p) for p = exp(token_logps), in float32, with p clamped to at most 1 - 2⁻²⁴.

    Why: a token the model already gives probability 1 (exactly, in float32) would make log(1 - p) = -inf and its
    gradient infinite. With the clamp such a token adds a bounded constant (≤ 16.64) and no gradient.
    """
    p = token_logps.float().exp().clamp(max=_P_MAX)
    return torch.log1p(-p)


def unlikelihood_loss(inputs: LossInputs, params: UnlikelihoodParams) -> LossOutput:
    """Token-level unlikelihood (Welleck et al. 2020; seed 000 eq. 5):

        L = -(1/T+) Σ_t log π(y+_t | x+, y+_<t)  -  β (1/T-) Σ_t log(1 - π(y-_t | x-, y-_<t))

    Shapes: policy_chosen_logps [B], chosen_lengths [B], policy_rejected_token_logps [B, L], rejected_mask [B, L]
    -> losses [B]. log(1 - p) is computed as log1p(-p) in float32 with p clamped below 1 (see ``log_one_minus_p``).
    Gradients w.r.t. the token probabilities: -1/(T+ p+_t) and +β/(T- (1 - p-_t)) (seed 000 eq. 8, per token).
    """
    mask = inputs.rejected_mask
    penalty = torch.where(mask, log_one_minus_p(inputs.policy_rejected_token_logps), 0.0).sum(-1)
    t_neg = mask.sum(-1).clamp(min=1)
    nll = mean_nll(inputs.policy_chosen_logps, inputs.chosen_lengths)
    unlikely = -penalty / t_neg
    losses = nll + params.beta * unlikely.to(nll.dtype)
    return LossOutput(losses=losses, metrics={"nll_chosen": nll.detach(), "unlikelihood": unlikely.detach()})


@dataclass(frozen=True)
class ExMATEParams:
    # 0.05 is CausalDialogue's ExMATE default (the code seed 000 follows); seed 000 tunes over {0.05, 0.1, 0.5, 1, 5}.
    beta: float = 0.05

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")


def exmate_loss(inputs: LossInputs, params: ExMATEParams) -> LossOutput:
    """ExMATE (Tuan & Wang; seed 000 eq. 6):

        L = -(1/T+) Σ_t log π(y+_t)  +  β exp((1/T-) Σ_t log π(y-_t))  =  NLL(y+) + β exp(-NLL(y-))

    exp(-NLL(y-)) is the geometric-mean token probability of y-, so the penalty is bounded by β and its gradient
    w.r.t. π(y-) is β, not the exploding β/(1 - p) of unlikelihood (seed 000 eq. 9, for T- = 1).
    Shapes: summed log-probs [B] and lengths [B] of y+ and y- -> losses [B].
    """
    nll = mean_nll(inputs.policy_chosen_logps, inputs.chosen_lengths)
    geo_mean_prob = torch.exp(-mean_nll(inputs.policy_rejected_logps, inputs.rejected_lengths))
    losses = nll + params.beta * geo_mean_prob
    return LossOutput(losses=losses, metrics={"nll_chosen": nll.detach(), "geo_prob_rejected": geo_mean_prob.detach()})


UNLIKELIHOOD = LossSpec(
    name="unlikelihood",
    fn=unlikelihood_loss,
    params=UnlikelihoodParams,
    needs=frozenset({"token_logps"}),
    summary="NLL(y+) - β·mean log(1 - π(y-_t)), token level (seed 000 eq. 5)",
)

EXMATE = LossSpec(
    name="exmate",
    fn=exmate_loss,
    params=ExMATEParams,
    needs=frozenset(),
    summary="NLL(y+) + β·exp(-NLL(y-)), ExMATE (seed 000 eq. 6)",
)
