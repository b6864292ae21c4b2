"""DPO and IPO: losses on the log-ratio margin h between the policy and a frozen reference.

h = [lpπ(y+|x+) - lpref(y+|x+)] - [lpπ(y-|x-) - lpref(y-|x-)], with summed response log-probs (LOSSES.md notation).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from trainers.losses.common import implicit_rewards, log_ratio_margin
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid


@dataclass(frozen=True)
class DPOParams:
    # 0.1 is the value of the DPO paper and of seeds 000/002; seed 000 tunes over {0.05, 0.1, 0.5, 1, 5}.
    beta: float = 0.1

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")


def dpo_loss(inputs: LossInputs, params: DPOParams) -> LossOutput:
    """DPO (Rafailov et al. 2023; seed 000 eq. 4):  L = -log σ(β h).

    Shapes: the four summed log-probs [B] -> losses [B]; rewards β·(lpπ - lpref) [B], detached.
    Its gradient w.r.t. lpπ(y±) is ∓β σ(-β h) (seed 000 eq. 7).
    """
    h = log_ratio_margin(inputs)
    losses = -logsigmoid(params.beta * h)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses=losses, chosen_rewards=chosen, rejected_rewards=rejected)


@dataclass(frozen=True)
class IPOParams:
    # 0.1 as in seed 002's IPO baseline (it sets β=0.1 for DPO and IPO alike).
    beta: float = 0.1
    # "sum": summed log-probs, as in the IPO paper and seed 002 eq. 8. "mean": per-token mean log-probs lp/T for the
    # policy and the reference alike, which is what TRL's IPO does.
    reduction: str = "sum"

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.reduction in ("sum", "mean"), f"reduction must be 'sum' or 'mean', got {self.reduction!r}")


def _ipo_margin(inputs: LossInputs, reduction: str) -> tuple[Tensor, Tensor, Tensor]:
    """(h, chosen log-ratio, rejected log-ratio) with summed or per-token-mean log-probs."""
    chosen = inputs.policy_chosen_logps - inputs.reference_chosen_logps
    rejected = inputs.policy_rejected_logps - inputs.reference_rejected_logps
    if reduction == "mean":
        chosen = chosen / inputs.chosen_lengths.clamp(min=1)
        rejected = rejected / inputs.rejected_lengths.clamp(min=1)
    return chosen - rejected, chosen, rejected


def ipo_loss(inputs: LossInputs, params: IPOParams) -> LossOutput:
    """IPO (Azar et al. 2024; seed 002 eq. 8):  L = (h - 1/(2β))².

    Shapes: the four summed log-probs [B] (+ lengths [B] when reduction="mean") -> losses [B].
    With reduction="mean", h uses lp/T in place of lp on both sides (TRL's IPO). Rewards are β times the same
    (summed or mean) log-ratios, detached.
    """
    h, chosen, rejected = _ipo_margin(inputs, params.reduction)
    losses = (h - 1 / (2 * params.beta)) ** 2
    return LossOutput(
        losses=losses,
        chosen_rewards=(params.beta * chosen).detach(),
        rejected_rewards=(params.beta * rejected).detach(),
    )


DPO = LossSpec(
    name="dpo",
    fn=dpo_loss,
    params=DPOParams,
    needs=frozenset({"reference"}),
    summary="-log σ(β h), the DPO loss (seed 000 eq. 4)",
)

IPO = LossSpec(
    name="ipo",
    fn=ipo_loss,
    params=IPOParams,
    needs=frozenset({"reference"}),
    summary="(h - 1/(2β))², the IPO loss (seed 002 eq. 8)",
)
