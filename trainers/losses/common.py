"""Small pieces several losses share. Shapes: [B] unless stated."""

from __future__ import annotations

from torch import Tensor

from trainers.spec import LossInputs


def log_ratio_margin(inputs: LossInputs) -> Tensor:
    """h = [lpπ(y+|x+) - lpref(y+|x+)] - [lpπ(y-|x-) - lpref(y-|x-)]  (the project's LOSSES notation)."""
    return (inputs.policy_chosen_logps - inputs.reference_chosen_logps) - (
        inputs.policy_rejected_logps - inputs.reference_rejected_logps
    )


def implicit_rewards(inputs: LossInputs, beta: float) -> tuple[Tensor, Tensor]:
    """β·(lpπ - lpref) for y+ and y-, detached: what the loop logs as chosen/rejected rewards."""
    chosen = beta * (inputs.policy_chosen_logps - inputs.reference_chosen_logps)
    rejected = beta * (inputs.policy_rejected_logps - inputs.reference_rejected_logps)
    return chosen.detach(), rejected.detach()


def mean_nll(summed_logps: Tensor, lengths: Tensor) -> Tensor:
    """Token-mean negative log-likelihood -(1/T) Σ_t log π(y_t|…)."""
    return -summed_logps / lengths.clamp(min=1)
