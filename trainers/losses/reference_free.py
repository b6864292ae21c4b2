"""Losses that need no reference model: SimPO, CPO, ORPO, RRHF and SLiC-HF.

They read only the policy's summed log-probs and the token counts of y+ and y- (the pair fields), so their needs
are empty. "NLL" is the token-mean negative log-likelihood of y+ (``common.mean_nll``), as in the `sft` loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.losses.common import mean_nll
from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid

NO_NEEDS: frozenset[str] = frozenset()

# ORPO's odds p/(1-p) are infinite at p = 1 (mlp = 0), which a float32 log-softmax does return for a token the
# model is sure of. Capping mlp here caps log-odds at about -log(1e-6) ≈ 13.8, far past where σ saturates.
_MAX_MEAN_LOGP = -1e-6


def _mean_logp(summed: Tensor, lengths: Tensor) -> Tensor:
    return -mean_nll(summed, lengths)


def _check_weight(name: str, value: float) -> None:
    check(value >= 0, f"{name} must be >= 0, got {value}")


@dataclass
class SimPOParams:
    # β=2.0, γ=0.5: the project's defaults (LOSSES); SimPO tunes both per model, with β around 2-2.5.
    beta: float = 2.0
    gamma: float = 0.5

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        _check_weight("gamma", self.gamma)


def simpo_loss(inputs: LossInputs, params: SimPOParams) -> LossOutput:
    """SimPO: a length-normalised, reference-free margin with a target reward margin γ.

    Shapes: policy chosen/rejected log-probs [B], chosen/rejected lengths [B] -> losses [B].
    ``losses = -log σ(β·mlpπ(y+) - β·mlpπ(y-) - γ)``, mlp = lp/T. The rewards β·mlp are what it logs.
    Source: Y. Meng, M. Xia, D. Chen, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
    NeurIPS 2024, arXiv:2405.14734.
    """
    chosen = params.beta * _mean_logp(inputs.policy_chosen_logps, inputs.chosen_lengths)
    rejected = params.beta * _mean_logp(inputs.policy_rejected_logps, inputs.rejected_lengths)
    losses = -logsigmoid(chosen - rejected - params.gamma)
    return LossOutput(losses, chosen.detach(), rejected.detach())


@dataclass
class CPOParams:
    # β=0.1 as in DPO; CPO's paper keeps DPO's β.
    beta: float = 0.1
    # CPO adds the NLL term with unit weight (L = L_prefer + L_NLL).
    lambda_nll: float = 1.0

    def __post_init__(self):
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        _check_weight("lambda_nll", self.lambda_nll)


def cpo_loss(inputs: LossInputs, params: CPOParams) -> LossOutput:
    """Contrastive Preference Optimization: DPO with a uniform reference, plus behaviour cloning on y+.

    Shapes: policy chosen/rejected log-probs [B], chosen length [B] -> losses [B].
    ``losses = -log σ(β lpπ(y+) - β lpπ(y-)) + λ·NLL(y+)`` with summed log-probs inside σ.
    Source: H. Xu et al., "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in Machine
    Translation", ICML 2024, arXiv:2401.08417.
    """
    chosen = params.beta * inputs.policy_chosen_logps
    rejected = params.beta * inputs.policy_rejected_logps
    nll = mean_nll(inputs.policy_chosen_logps, inputs.chosen_lengths)
    losses = -logsigmoid(chosen - rejected) + params.lambda_nll * nll
    return LossOutput(losses, chosen.detach(), rejected.detach(), metrics={"nll": nll.detach()})


def log_odds(mean_logp: Tensor) -> Tensor:
    """log(p/(1-p)) for p = exp(mlp), without forming p: mlp - log(1 - exp(mlp)).

    log(1 - e^x) is taken as log(-expm1(x)) near 0 and log1p(-e^x) far from it (Mächler 2012, "Accurately computing
    log(1 - exp(-|a|))"), in float32 at least; mlp is capped just below 0 so p = 1 gives a large finite value.
    """
    x = mean_logp.to(torch.promote_types(mean_logp.dtype, torch.float32)).clamp(max=_MAX_MEAN_LOGP)
    log1mexp = torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
    return x - log1mexp


@dataclass
class ORPOParams:
    # λ=0.1: ORPO's setting for its main runs (and TRL's default for the same weight).
    lambda_or: float = 0.1

    def __post_init__(self):
        _check_weight("lambda_or", self.lambda_or)


def orpo_loss(inputs: LossInputs, params: ORPOParams) -> LossOutput:
    """Odds-Ratio Preference Optimization: SFT on y+ plus a log-odds-ratio penalty, no reference.

    Shapes: policy chosen/rejected log-probs [B], chosen/rejected lengths [B] -> losses [B] (float32 at least).
    ``losses = NLL(y+) - λ log σ(log odds(y+) - log odds(y-))``, odds(y) = p/(1-p) with p = exp(mlp(y)).
    Logged rewards are the log-odds (detached). Source: J. Hong, N. Lee, J. Thorne, "ORPO: Monolithic Preference
    Optimization without Reference Model", EMNLP 2024, arXiv:2403.07691.
    """
    chosen = log_odds(_mean_logp(inputs.policy_chosen_logps, inputs.chosen_lengths))
    rejected = log_odds(_mean_logp(inputs.policy_rejected_logps, inputs.rejected_lengths))
    ratio_term = -logsigmoid(chosen - rejected)
    nll = mean_nll(inputs.policy_chosen_logps, inputs.chosen_lengths)
    losses = nll + params.lambda_or * ratio_term
    metrics = {"nll": nll.detach(), "log_odds_ratio": (chosen - rejected).detach()}
    return LossOutput(losses, chosen.detach(), rejected.detach(), metrics=metrics)


@dataclass
class RRHFParams:
    # RRHF sums the ranking and fine-tuning losses with unit weight (L = L_rank + L_ft).
    lambda_nll: float = 1.0

    def __post_init__(self):
        _check_weight("lambda_nll", self.lambda_nll)


def rrhf_loss(inputs: LossInputs, params: RRHFParams) -> LossOutput:
    """RRHF on a pair: rank hinge on length-normalised log-probs, plus NLL on the better response.

    Shapes: policy chosen/rejected log-probs [B], chosen/rejected lengths [B] -> losses [B].
    ``losses = max(0, p(y-) - p(y+)) + λ·NLL(y+)``, p = mlp. With two responses RRHF's sum over mis-ranked pairs is
    this one term; it has no margin, so a correctly ranked pair gets gradient only from the NLL.
    Source: Z. Yuan et al., "RRHF: Rank Responses to Align Language Models with Human Feedback without tears",
    NeurIPS 2023, arXiv:2304.05302.
    """
    chosen = _mean_logp(inputs.policy_chosen_logps, inputs.chosen_lengths)
    rejected = _mean_logp(inputs.policy_rejected_logps, inputs.rejected_lengths)
    nll = -chosen
    losses = torch.relu(rejected - chosen) + params.lambda_nll * nll
    return LossOutput(losses, chosen.detach(), rejected.detach(), metrics={"nll": nll.detach()})


@dataclass
class SLiCHFParams:
    # δ=1 nat of summed log-prob: SLiC's unit calibration margin.
    delta: float = 1.0
    # λ=0.5: a middle value; SLiC-HF tunes the regulariser weight per task, so sweep it.
    lambda_nll: float = 0.5

    def __post_init__(self):
        check(self.delta > 0, f"delta must be > 0, got {self.delta}")
        _check_weight("lambda_nll", self.lambda_nll)


def slic_hf_loss(inputs: LossInputs, params: SLiCHFParams) -> LossOutput:
    """SLiC-HF (direct): a rank-calibration hinge on summed log-probs plus a likelihood regulariser.

    Shapes: policy chosen/rejected log-probs [B], chosen length [B] -> losses [B].
    ``losses = max(0, δ - lpπ(y+) + lpπ(y-)) + λ·NLL(y+)``. The paper regularises toward the SFT target; on
    preference pairs y+ plays that role, and NLL is token-mean here (project convention) rather than summed.
    Source: Y. Zhao et al., "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", 2023, arXiv:2305.10425.
    """
    chosen = inputs.policy_chosen_logps
    rejected = inputs.policy_rejected_logps
    nll = mean_nll(chosen, inputs.chosen_lengths)
    losses = torch.relu(params.delta - chosen + rejected) + params.lambda_nll * nll
    return LossOutput(losses, chosen.detach(), rejected.detach(), metrics={"nll": nll.detach()})


SIMPO = LossSpec(
    name="simpo",
    fn=simpo_loss,
    params=SimPOParams,
    needs=NO_NEEDS,
    summary="reference-free, length-normalised margin with γ",
)
CPO = LossSpec(name="cpo", fn=cpo_loss, params=CPOParams, needs=NO_NEEDS, summary="reference-free DPO plus λ·NLL(y+)")
ORPO = LossSpec(
    name="orpo",
    fn=orpo_loss,
    params=ORPOParams,
    needs=NO_NEEDS,
    summary="NLL(y+) minus λ·log σ(log-odds ratio)",
)
RRHF = LossSpec(
    name="rrhf",
    fn=rrhf_loss,
    params=RRHFParams,
    needs=NO_NEEDS,
    summary="ranking hinge on length-normalised log-probs plus NLL",
)
SLIC_HF = LossSpec(
    name="slic-hf",
    fn=slic_hf_loss,
    params=SLiCHFParams,
    needs=NO_NEEDS,
    summary="hinge with margin δ on log-probs plus λ·NLL",
)
