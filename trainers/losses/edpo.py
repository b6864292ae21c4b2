"""ε-DPO (Lee et al., seed 003): DPO with a per-pair β chosen by a logit-perturbation test.

The policy trained at β/(1+ε) or β/(1-ε) is estimated without training it, from the current policy's and the
reference's logits (seed 003 Proposition 1, after Liu et al.):

    π(β/(1+ε)) ≈ Π_t softmax((1+ε) fπ - ε fref)[y_t]        π(β/(1-ε)) ≈ Π_t softmax((1-ε) fπ + ε fref)[y_t]

With z = log π(y+|x+) - log π(y-|x-) under each of the three policies (z⁻ at β/(1+ε), z at β, z⁺ at β/(1-ε)):

    z⁻ > z > z⁺  ->  β̃ = β/(1+ε)   relaxed: a weaker KL penalty,     s = +1   (seed 003 condition (1))
    z⁺ > z > z⁻  ->  β̃ = β/(1-ε)   tightened: a stronger KL penalty, s = -1   (seed 003 condition (2))
    otherwise    ->  β̃ = β                                           s =  0

so β̃ = β/(1 + ε_step·s). The sign of s is the official code's: its update β ← β/(1 + ε·mean(s)) lowers β when most
pairs are relaxed; seed 003 Table 3 reports this mean as E[sgn(ε_i)].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid


@dataclass(frozen=True)
class EDPOParams:
    # β₀ = 0.1: inside seed 003's Anthropic-HH sweep {0.01, 0.05, 0.1, 0.5}; its UltraFeedback runs use 0.01.
    beta: float = 0.1
    # ε = 0.01 is seed 003's default (Table 3); its sweep is {0.005, 0.01, 0.02}. ε = 0 degenerates to DPO.
    epsilon: float = 0.01
    # ε_c of seed 003 Table 3: the perturbation that estimates z⁻ and z⁺. None -> epsilon.
    epsilon_test: float | None = None
    # ε_s of seed 003 Table 3: the step β̃ = β/(1 + ε_s·s). None -> epsilon.
    epsilon_step: float | None = None
    # "mean": β ← mean(β̃) over the global batch (seed 003 §3.3). "code": β ← β/(1 + ε_s·mean(s)) (official code).
    update: str = "mean"

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        for name in ("epsilon", "epsilon_test", "epsilon_step"):
            value = getattr(self, name)
            if value is not None:
                check(0 <= value < 1, f"{name} must be in [0, 1), got {value}")
        check(self.update in ("mean", "code"), f"update must be 'mean' or 'code', got {self.update!r}")

    @property
    def eps_test(self) -> float:
        return self.epsilon if self.epsilon_test is None else self.epsilon_test

    @property
    def eps_step(self) -> float:
        return self.epsilon if self.epsilon_step is None else self.epsilon_step


def perturbed_logps(policy_logits: Tensor, reference_logits: Tensor, labels: Tensor, mask: Tensor, eps: float):
    """(lp at β/(1+ε), lp at β, lp at β/(1-ε)) of one response side, each [B], float32, no grad.

    Shapes: logits [B, L, V], labels [B, L] long, mask [B, L] bool. The mixed logits and their log-softmax are
    computed on the response positions only ([n, V], n = mask.sum()): padding and any prompt positions in L would
    cost three [V]-wide log-softmaxes each and count for nothing.
    """
    with torch.no_grad():
        rows, cols = mask.nonzero(as_tuple=True)
        f_pi, f_ref = policy_logits[rows, cols].float(), reference_logits[rows, cols].float()
        y = labels[rows, cols].unsqueeze(-1)

        def summed(logits: Tensor) -> Tensor:  # Σ_t log softmax(logits_t)[y_t] per row [B]
            token = torch.log_softmax(logits, dim=-1).gather(-1, y).squeeze(-1)
            return torch.zeros(mask.shape[0], dtype=token.dtype, device=token.device).index_add_(0, rows, token)

        at_beta = summed(f_pi)
        lower = summed((1 + eps) * f_pi - eps * f_ref)
        upper = summed((1 - eps) * f_pi + eps * f_ref)
    return lower, at_beta, upper


def monotonicity_sign(inputs: LossInputs, eps: float) -> Tensor:
    """s ∈ {+1, -1, 0} per pair [B] (sign convention in the module docstring)."""
    c_lo, c, c_hi = perturbed_logps(
        inputs.policy_chosen_logits, inputs.reference_chosen_logits, inputs.chosen_labels, inputs.chosen_mask, eps
    )
    r_lo, r, r_hi = perturbed_logps(
        inputs.policy_rejected_logits,
        inputs.reference_rejected_logits,
        inputs.rejected_labels,
        inputs.rejected_mask,
        eps,
    )
    z_minus, z, z_plus = c_lo - r_lo, c - r, c_hi - r_hi
    relaxed = (z_minus > z) & (z > z_plus)
    tightened = (z_plus > z) & (z > z_minus)
    return relaxed.float() - tightened.float()


def current_beta(state, params: EDPOParams) -> float:
    """β before this step: the loop's state, or β₀ when no step has been taken (state absent)."""
    return float(state["beta"]) if state else params.beta


def edpo_loss(inputs: LossInputs, params: EDPOParams) -> LossOutput:
    """ε-DPO (seed 003 Algorithm 1):  L = -log σ(β̃ h),  β̃ = β/(1 + ε_s·s)  per pair.

    Shapes: summed log-probs [B]; logits [B, L, V] of policy and reference on y+ and y-; labels and masks [B, L]
    -> losses [B]. step_stats: "beta_tilde" [B] and "s" [B], gathered over the global batch for ``update_state``.
    Rewards are β̃·(lpπ - lpref), detached: the β each pair was trained with.
    """
    beta = current_beta(inputs.state, params)
    s = monotonicity_sign(inputs, params.eps_test)
    h_chosen = inputs.policy_chosen_logps - inputs.reference_chosen_logps
    h_rejected = inputs.policy_rejected_logps - inputs.reference_rejected_logps
    beta_tilde = (beta / (1 + params.eps_step * s)).to(h_chosen.dtype)
    losses = -logsigmoid(beta_tilde * (h_chosen - h_rejected))
    # [B] tensors: the loop averages them, so the shares and mean(s) come out over the logged batch.
    metrics = {
        "beta": torch.tensor(beta),
        "relaxed_share": (s > 0).float(),
        "tightened_share": (s < 0).float(),
        "mean_s": s,
    }
    return LossOutput(
        losses=losses,
        chosen_rewards=(beta_tilde * h_chosen).detach(),
        rejected_rewards=(beta_tilde * h_rejected).detach(),
        metrics=metrics,
        step_stats={"beta_tilde": beta_tilde.detach(), "s": s},
    )


def init_state(params: EDPOParams) -> dict[str, float]:
    return {"beta": params.beta}


def update_state(state: dict[str, float], stats: dict[str, Tensor], params: EDPOParams) -> dict[str, float]:
    """β for the next optimizer step, from ``stats`` concatenated over the whole global batch.

    Pairs are weighted equally, wherever they sat: a mean over micro-batch means would weight pairs in small
    micro-batches more (seed 003 §3.3 stresses independence from the micro-batch size).
    """
    if params.update == "mean":
        beta = stats["beta_tilde"].double().mean().item()
    else:
        beta = state["beta"] / (1 + params.eps_step * stats["s"].double().mean().item())
    return {**state, "beta": beta}


E_DPO = LossSpec(
    name="e-dpo",
    fn=edpo_loss,
    params=EDPOParams,
    needs=frozenset({"reference", "reference_logits", "state"}),
    summary="ε-DPO: per-pair β from a logit-perturbation test (seed 003)",
    init_state=init_state,
    update_state=update_state,
)
