"""Losses that score y+ and y- separately against a baseline instead of against each other: KTO and BCO (paired).

Both read summed policy and reference log-probs (need "reference"); r(y) = lpπ(y|x) - lpref(y|x) is the log-ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.losses.common import implicit_rewards
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid


def _log_ratios(inputs: LossInputs) -> tuple[Tensor, Tensor]:
    chosen = inputs.policy_chosen_logps - inputs.reference_chosen_logps
    rejected = inputs.policy_rejected_logps - inputs.reference_rejected_logps
    return chosen, rejected


@dataclass
class KTOParams:
    # KTO's default β (the paper keeps DPO's 0.1).
    beta: float = 0.1
    # Paired data has as many desirable as undesirable examples, so equal weights already satisfy the paper's advice
    # λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3].
    lambda_d: float = 1.0
    lambda_u: float = 1.0

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.lambda_d > 0, f"lambda_d must be > 0, got {self.lambda_d}")
        check(self.lambda_u > 0, f"lambda_u must be > 0, got {self.lambda_u}")


def kto_reference_point(chosen_log_ratios: Tensor, rejected_log_ratios: Tensor) -> Tensor:
    """z_ref = max(0, mean of all 2B log-ratios in the micro-batch), detached: a scalar.

    The paper estimates KL(π || ref) from mismatched pairs (x_i, y_j), j ≠ i, which needs extra forward passes that
    LossInputs does not carry; the matched log-ratios of this micro-batch are the estimate available here. They are
    biased toward the examples being trained on, which is why the estimate is clamped at 0 (a KL is non-negative) and
    detached (the paper, like its code, passes no gradient through z_ref). It is per micro-batch, not global.
    """
    z = torch.cat([chosen_log_ratios, rejected_log_ratios]).detach().mean()
    return z.clamp(min=0.0)


def kto_loss(inputs: LossInputs, params: KTOParams) -> LossOutput:
    """Kahneman-Tversky Optimisation on pairs: y+ is a desirable example, y- an undesirable one.

    Shapes: policy/reference chosen/rejected log-probs [B] -> losses [B].
    ``losses = λ_D (1 - σ(β(r+ - z))) + λ_U (1 - σ(β(z - r-)))``, r± the log-ratios, z = ``kto_reference_point``.
    Each pair contributes one desirable and one undesirable term, so the loop's mean over pairs is the paper's mean
    over examples times 2. Source: K. Ethayarajh, W. Xu, N. Muennighoff, D. Jurafsky, D. Kiela, "KTO: Model
    Alignment as Prospect Theoretic Optimization", ICML 2024, arXiv:2402.01306.
    """
    chosen, rejected = _log_ratios(inputs)
    z = kto_reference_point(chosen, rejected)
    desirable = params.lambda_d * (1.0 - torch.sigmoid(params.beta * (chosen - z)))
    undesirable = params.lambda_u * (1.0 - torch.sigmoid(params.beta * (z - rejected)))
    chosen_rewards, rejected_rewards = implicit_rewards(inputs, params.beta)
    return LossOutput(desirable + undesirable, chosen_rewards, rejected_rewards, metrics={"kl_estimate": z})


@dataclass
class BCOPairParams:
    # DPO's default (LOSSES); BCO's reward is DPO's implicit reward β·r.
    beta: float = 0.1

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")


def bco_pair_loss(inputs: LossInputs, params: BCOPairParams) -> LossOutput:
    """Binary Classifier Optimisation on pairs: y+ labelled 1, y- labelled 0, logits = rewards shifted by δ.

    Shapes: policy/reference chosen/rejected log-probs [B]; state {"delta", "count"} -> losses [B].
    ``losses = -log σ(β r+ - δ) - log σ(-(β r- - δ))``, δ = the running mean of all rewards β·r± seen in earlier
    optimizer steps (the reward shift that tightens BCE's bound on the DPO loss). δ comes from the state, i.e. from
    steps before this one; at step 1 it is 0, which is exact there since π = ref gives every reward 0.
    Source: S. Jung, G. Han, D. W. Nam, K.-W. On, "Binary Classifier Optimization for Large Language Model
    Alignment", ACL 2025, arXiv:2404.04656.
    """
    chosen, rejected = (params.beta * r for r in _log_ratios(inputs))
    delta = inputs.state["delta"]
    losses = -logsigmoid(chosen - delta) - logsigmoid(-(rejected - delta))
    return LossOutput(
        losses,
        chosen.detach(),
        rejected.detach(),
        step_stats={"pair_reward_mean": ((chosen + rejected) / 2).detach()},
    )


def bco_init_state(params: BCOPairParams) -> dict[str, float]:
    return {"delta": 0.0, "count": 0.0}


def bco_update_state(state: dict[str, float], stats: dict[str, Tensor], params: BCOPairParams) -> dict[str, float]:
    """Cumulative mean over every pair of every step (equal weight per reward, as a running mean; not an EMA).

    ``stats["pair_reward_mean"]`` [N] holds (β r+ + β r-)/2 for each pair of the global batch; with two rewards per
    pair the mean over pairs is the mean over rewards.
    """
    batch = stats["pair_reward_mean"].detach().double()
    count = state["count"] + batch.numel()
    delta = state["delta"] + (batch.sum().item() - batch.numel() * state["delta"]) / count
    if not math.isfinite(delta):
        raise ValueError(f"bco-pair: non-finite reward shift {delta} after a batch of {batch.numel()} pairs")
    return {"delta": delta, "count": float(count)}


KTO = LossSpec(
    name="kto",
    fn=kto_loss,
    params=KTOParams,
    needs=frozenset({"reference"}),
    summary="Kahneman-Tversky optimisation on pairs split into desirable/undesirable",
)
BCO_PAIR = LossSpec(
    name="bco-pair",
    fn=bco_pair_loss,
    params=BCOPairParams,
    needs=frozenset({"reference", "state"}),
    summary="binary classifier optimisation on pairs, running reward shift",
    init_state=bco_init_state,
    update_state=bco_update_state,
)
