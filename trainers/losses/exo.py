"""EXO and DPO-rw (Ji et al., seed 004): probability matching over K completions of one prompt.

Over K completions y_1..y_K drawn from the reference, two distributions on {1..K}:

    p_f(i) = softmax_i(β_π (lpπ(y_i|x) - lpref(y_i|x)))      (seed 004 eq. 13)
    p_r(i) = softmax_i(r(x, y_i) / β_r)                      (seed 004 eq. 14)

EXO minimises the reverse KL(p_f || p_r) (mode-seeking; eq. 15, Theorem 3.2); DPO-rw minimises the cross-entropy
-Σ p_r log p_f, i.e. the forward KL up to a constant (mean-seeking; eq. 19, Theorem 3.3). Logit temperature τ is
applied by the loop before log-probs reach these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.losses.common import implicit_rewards, log_ratio_margin
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid


@dataclass(frozen=True)
class ExoPrefParams:
    # β_π = 0.5 is seed 004's setting on summarisation and dialogue (0.1 on the sentiment task).
    beta_pi: float = 0.5
    # ε smooths the one-hot preference into [1-ε, ε] so the reverse KL stays finite (seed 004 §3.2).
    epsilon: float = 1e-3

    def __post_init__(self):
        check(self.beta_pi > 0, f"beta_pi must be > 0, got {self.beta_pi}")
        check(0 < self.epsilon < 1, f"epsilon must be in (0, 1), got {self.epsilon}")


def exo_pref_loss(inputs: LossInputs, params: ExoPrefParams) -> LossOutput:
    """EXO on preference pairs (seed 004 eq. 18), the K=2 case of EXO with target [1-ε, ε]:

        z = β_π h,   L = σ(z)(log σ(z) - log(1-ε)) + σ(-z)(log σ(-z) - log ε)

    Shapes: the four summed log-probs [B] -> losses [B]; rewards β_π·(lpπ - lpref) [B], detached.
    """
    z = params.beta_pi * log_ratio_margin(inputs)
    losses = torch.sigmoid(z) * (logsigmoid(z) - math.log1p(-params.epsilon)) + torch.sigmoid(-z) * (
        logsigmoid(-z) - math.log(params.epsilon)
    )
    chosen, rejected = implicit_rewards(inputs, params.beta_pi)
    return LossOutput(losses=losses, chosen_rewards=chosen, rejected_rewards=rejected)


@dataclass(frozen=True)
class RewardWeightedParams:
    """β_π scales the policy's log-ratios, β_r the rewards; β_π·β_r plays DPO's β (seed 004 Theorem 3.1)."""

    # Seed 004 App. D.1 recommends β_π = 0.5, β_r = 0.1, and uses the same values for EXO and DPO-rw.
    beta_pi: float = 0.5
    beta_r: float = 0.1

    def __post_init__(self):
        check(self.beta_pi > 0, f"beta_pi must be > 0, got {self.beta_pi}")
        check(self.beta_r > 0, f"beta_r must be > 0, got {self.beta_r}")


def _log_distributions(inputs: LossInputs, params: RewardWeightedParams) -> tuple[Tensor, Tensor]:
    """(log p_f, log p_r), each [B, K]."""
    log_pf = torch.log_softmax(params.beta_pi * (inputs.policy_logps_k - inputs.reference_logps_k), dim=-1)
    log_pr = torch.log_softmax(inputs.rewards_k.to(log_pf.dtype) / params.beta_r, dim=-1).detach()
    return log_pf, log_pr


def _agreement(log_pf: Tensor, log_pr: Tensor) -> dict[str, Tensor]:
    return {"top1_agreement": (log_pf.argmax(-1) == log_pr.argmax(-1)).float()}


def exo_rw_loss(inputs: LossInputs, params: RewardWeightedParams) -> LossOutput:
    """EXO with K scored samples (seed 004 eq. 15 / 25):  L = KL(p_f || p_r) = Σ_i p_f(i) (log p_f(i) - log p_r(i)).

    The gradient flows through both the weight p_f(i) and log p_f(i); with the weight detached the gradient of
    Σ p_f log p_f would vanish and the loss would degrade to a cross-entropy. Shapes: policy_logps_k,
    reference_logps_k, rewards_k [B, K] -> losses [B]. No per-pair rewards (K samples): chosen/rejected are None.
    """
    log_pf, log_pr = _log_distributions(inputs, params)
    losses = (log_pf.exp() * (log_pf - log_pr)).sum(-1)
    return LossOutput(losses=losses, metrics=_agreement(log_pf, log_pr))


def dpo_rw_loss(inputs: LossInputs, params: RewardWeightedParams) -> LossOutput:
    """DPO with K scored samples (seed 004 eq. 19):  L = -Σ_i p_r(i) log p_f(i).

    With K=2 and a one-hot p_r on the preferred sample this is DPO with β = β_π. Shapes as ``exo_rw_loss``.
    """
    log_pf, log_pr = _log_distributions(inputs, params)
    losses = -(log_pr.exp() * log_pf).sum(-1)
    return LossOutput(losses=losses, metrics=_agreement(log_pf, log_pr))


_K_NEEDS = frozenset({"k_samples", "reference", "rewards"})

EXO_PREF = LossSpec(
    name="exo-pref",
    fn=exo_pref_loss,
    params=ExoPrefParams,
    needs=frozenset({"reference"}),
    summary="EXO on pairwise preferences: reverse KL to [1-ε, ε] (seed 004 eq. 18)",
)

EXO_RW = LossSpec(
    name="exo-rw",
    fn=exo_rw_loss,
    params=RewardWeightedParams,
    needs=_K_NEEDS,
    summary="EXO with K scored samples: KL(p_f || p_r) (seed 004 eq. 15)",
)

DPO_RW = LossSpec(
    name="dpo-rw",
    fn=dpo_rw_loss,
    params=RewardWeightedParams,
    needs=_K_NEEDS,
    summary="DPO with K scored samples: cross-entropy -Σ p_r log p_f (seed 004 eq. 19)",
)
