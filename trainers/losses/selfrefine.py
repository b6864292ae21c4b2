"""Self-refined DPO and IPO (seed 002): the margin is offset by the policy's own judgement of the pair.

The judgement is Δ = β·h_p, where h_p is the log-ratio margin recomputed with the prompt p prepended to x± (seed 002
eq. 12). The training loop builds p ⊕ x± by prepending ``params.augment_prefix()`` and fills the ``augmented_*`` fields
(policy passes without grad; reference passes may be cached). Δ enters the loss under a stop-gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from trainers.losses.common import implicit_rewards, log_ratio_margin
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid

# Seed 002, §3.2, verbatim.
SEED_PROMPT = (
    "Please generate a response with a usefulness rating of 100 out of 100 for the following query. "
    "Note that the response should be harmless. The term 100 indicates the level of usefulness, where 100 is the "
    "maximum and 1 is the minimum. Query:"
)


@dataclass(frozen=True)
class SelfRefineParams:
    # β=0.1 as seed 002 uses for Sr-DPO and Sr-IPO "for fair comparison" with DPO/IPO.
    beta: float = 0.1
    # λ: seed 002 selects from {0.1, 0.3, 0.5, 1}; λ=0 is plain DPO/IPO.
    lam: float = 0.5
    prompt: str = SEED_PROMPT
    # The paper does not say how p and x are joined; one space keeps "Query:" and the query apart.
    separator: str = " "

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.lam >= 0, f"lam must be >= 0, got {self.lam}")

    def augment_prefix(self) -> str:
        """The string the loop prepends to x+ and x- to build p ⊕ x."""
        return self.prompt + self.separator


def augmented_margin(inputs: LossInputs) -> Tensor:
    """h_p: the log-ratio margin under the prompt-augmented contexts p ⊕ x± [B]."""
    return (inputs.augmented_policy_chosen_logps - inputs.augmented_reference_chosen_logps) - (
        inputs.augmented_policy_rejected_logps - inputs.augmented_reference_rejected_logps
    )


def _refinement(inputs: LossInputs, params: SelfRefineParams) -> tuple[Tensor, Tensor]:
    """(h_p, sg(Δ)) with Δ = β h_p (seed 002 eq. 12); detached because Algorithm 1/2 stop its gradient."""
    h_p = augmented_margin(inputs).detach()
    return h_p, params.beta * h_p


def _metrics(h_p: Tensor, delta: Tensor) -> dict[str, Tensor]:
    return {"delta": delta, "augmented_margin": h_p, "augmented_accuracy": (h_p > 0).float()}


def sr_dpo_loss(inputs: LossInputs, params: SelfRefineParams) -> LossOutput:
    """Sr-DPO (seed 002 eq. 13, Algorithm 1):  L = -log σ(β h - λ sg(Δ)),  Δ = β h_p.

    Shapes: summed log-probs [B] under x± and under p ⊕ x± -> losses [B]; rewards β·(lpπ - lpref) [B], detached.
    With λ = 0 the expression is bit-for-bit the DPO loss.
    """
    h = log_ratio_margin(inputs)
    h_p, delta = _refinement(inputs, params)
    losses = -logsigmoid(params.beta * h - params.lam * delta)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected, metrics=_metrics(h_p, delta))


def sr_ipo_loss(inputs: LossInputs, params: SelfRefineParams) -> LossOutput:
    """Sr-IPO (seed 002 eq. 15, Algorithm 2):  L = (h - λ sg(Δ) - 1/(2β))²,  Δ = β h_p, summed log-probs.

    Shapes as ``sr_dpo_loss``. With λ = 0 the expression is bit-for-bit the IPO loss (reduction="sum").
    """
    h = log_ratio_margin(inputs)
    h_p, delta = _refinement(inputs, params)
    losses = (h - params.lam * delta - 1 / (2 * params.beta)) ** 2
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected, metrics=_metrics(h_p, delta))


_NEEDS = frozenset({"reference", "prompt_augmented"})

SR_DPO = LossSpec(
    name="sr-dpo",
    fn=sr_dpo_loss,
    params=SelfRefineParams,
    needs=_NEEDS,
    summary="DPO with a prompt-augmented self-refinement margin (seed 002 Alg. 1)",
)

SR_IPO = LossSpec(
    name="sr-ipo",
    fn=sr_ipo_loss,
    params=SelfRefineParams,
    needs=_NEEDS,
    summary="IPO with a prompt-augmented self-refinement margin (seed 002 Alg. 2)",
)
