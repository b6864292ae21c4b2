"""DPO whose regularisation moves during training: β-DPO (β follows the batch margin) and TR-DPO (the reference
follows the policy).

Both use the project's margin ``h`` (LOSSES "Notation") over summed policy and reference log-probs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from trainers.losses.common import implicit_rewards, log_ratio_margin
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid


@dataclass
class BetaDPOParams:
    # β₀=0.1: DPO's default (LOSSES) and the official β-DPO runs' base β.
    beta: float = 0.1
    # α=0.6: the scaling factor in the official β-DPO code's worked example (README, loss.a=0.6).
    alpha: float = 0.6
    # m=0.9: the momentum of the M₀ estimate in the paper and the official code.
    momentum: float = 0.9
    # Floor on the batch β, as in the official code: keeps -log σ(βh) a preference loss when a batch's margin
    # falls far below M₀; small enough not to bind in ordinary training.
    min_beta: float = 1e-3

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}")
        check(0.0 <= self.momentum < 1.0, f"momentum must be in [0, 1), got {self.momentum}")
        check(0.0 < self.min_beta <= self.beta, f"min_beta must be in (0, beta], got {self.min_beta}")


def batch_beta(margins: Tensor, margin_ema: float, params: BetaDPOParams) -> Tensor:
    """β_batch = max(β₀·(1 + α·(mean(h) - M₀)), min_beta), detached: a scalar."""
    beta = params.beta * (1.0 + params.alpha * (margins.detach().mean() - margin_ema))
    return beta.clamp(min=params.min_beta)


def beta_dpo_loss(inputs: LossInputs, params: BetaDPOParams) -> LossOutput:
    """β-DPO: DPO with a batch-level β that grows when the batch's margin exceeds its running estimate M₀.

    Shapes: policy/reference chosen/rejected log-probs [B]; state {"margin_ema": M₀} -> losses [B].
    ``losses = -log σ(β_batch·h)``, ``β_batch = β₀(1 + α(mean_batch(h) - M₀))`` (``batch_beta``), no gradient through
    β_batch. M_i is the unscaled margin h_i, as in the official code (the paper calls it the reward discrepancy).
    Choices, versus the paper:
    - M₀ comes from the state, i.e. earlier optimizer steps (EMA over global batches, ``beta_dpo_update_state``); the
      official code folds the current batch into M₀ first, which shrinks the effective α by the factor m.
    - "batch" is the micro-batch the loss sees; with gradient accumulation β_batch varies across micro-batches.
    - The paper's β-guided data filtering (drop a share of pairs, sampled by a Gaussian weight around M₀) is not
      implemented: it is random per batch and needs per-example weights in the loop's reduction. This is β-DPO
      with filtering off.
    Logged rewards use β₀, so they compare across steps. Source: J. Wu, Y. Xie, Z. Yang, J. Wu, J. Gao, B. Ding,
    X. Wang, X. He, "β-DPO: Direct Preference Optimization with Dynamic β", NeurIPS 2024, arXiv:2407.08639.
    """
    h = log_ratio_margin(inputs)
    beta = batch_beta(h, inputs.state["margin_ema"], params)
    losses = -logsigmoid(beta * h)
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected, metrics={"beta": beta}, step_stats={"margin": h.detach()})


def beta_dpo_init_state(params: BetaDPOParams) -> dict[str, float]:
    # π = ref before step 1, so every margin is 0: the official code also starts M₀ at 0.
    return {"margin_ema": 0.0}


def beta_dpo_update_state(state: dict[str, float], stats: dict[str, Tensor], params: BetaDPOParams) -> dict[str, float]:
    """M₀ ← m·M₀ + (1 - m)·mean(h) over the global batch of the step just taken."""
    batch_mean = stats["margin"].detach().double().mean().item()
    ema = params.momentum * state["margin_ema"] + (1.0 - params.momentum) * batch_mean
    if not math.isfinite(ema):
        raise ValueError(f"beta-dpo: non-finite margin estimate {ema}")
    return {"margin_ema": ema}


# How far the reference moves toward the policy at a sync step (ref ← w·π + (1-w)·ref), per TR-DPO mode.
_SYNC_WEIGHT: dict[str, Callable[[TRDPOParams], float]] = {
    "soft": lambda p: p.alpha,
    "hard": lambda p: 1.0,
}


@dataclass
class TRDPOParams:
    # DPO's default (LOSSES).
    beta: float = 0.1
    # "soft" mixes the weights ref ← α·π + (1-α)·ref; "hard" copies π into ref (alpha is unused there).
    mode: Literal["soft", "hard"] = "soft"
    # α=0.6 and τ=512: the values the TR-DPO paper singles out for its soft and hard updates (TRL's defaults too).
    alpha: float = 0.6
    # Sync period in optimizer steps, for both modes; τ=1 gives a per-step soft update.
    tau: int = 512

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.mode in _SYNC_WEIGHT, f"mode must be one of {sorted(_SYNC_WEIGHT)}, got {self.mode!r}")
        check(0.0 < self.alpha <= 1.0, f"alpha must be in (0, 1], got {self.alpha}")
        check(self.tau >= 1, f"tau must be >= 1, got {self.tau}")


def tr_dpo_loss(inputs: LossInputs, params: TRDPOParams) -> LossOutput:
    """Trust-region DPO: the DPO loss against a reference that the loop moves toward the policy.

    Shapes: policy/reference chosen/rejected log-probs [B] -> losses [B]. ``losses = -log σ(βh)``, h against the
    *current* reference, so reference log-probs must come from a live forward (need "moving_reference", never the
    cache). The update schedule is ``tr_dpo_reference_update``.
    Source: A. Gorbatovski, B. Shaposhnikov, A. Malakhov, N. Surnachev, Y. Aksenov, I. Maksimov, N. Balagansky,
    D. Gavrilov, "Learn Your Reference Model for Real Good Alignment", 2024, arXiv:2404.09656.
    """
    losses = -logsigmoid(params.beta * log_ratio_margin(inputs))
    chosen, rejected = implicit_rewards(inputs, params.beta)
    return LossOutput(losses, chosen, rejected)


def tr_dpo_reference_update(params: TRDPOParams, step: int) -> float | None:
    """After optimizer step ``step`` (1-based): the weight w of ref ← w·π + (1-w)·ref, or None to leave ref alone.

    Every τ-th step: α in "soft" mode, 1.0 (a copy) in "hard" mode.
    """
    if step < 1 or step % params.tau != 0:
        return None
    return _SYNC_WEIGHT[params.mode](params)


BETA_DPO = LossSpec(
    name="beta-dpo",
    fn=beta_dpo_loss,
    params=BetaDPOParams,
    needs=frozenset({"reference", "state"}),
    summary="β-DPO: batch-level β from a momentum margin estimate",
    init_state=beta_dpo_init_state,
    update_state=beta_dpo_update_state,
)
TR_DPO = LossSpec(
    name="tr-dpo",
    fn=tr_dpo_loss,
    params=TRDPOParams,
    needs=frozenset({"reference", "moving_reference"}),
    summary="trust-region DPO: the reference follows the policy",
    reference_update=tr_dpo_reference_update,
)
