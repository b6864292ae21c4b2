"""Maximum-likelihood fine-tuning on the preferred response (SFT)."""

from __future__ import annotations

from dataclasses import dataclass

from trainers.losses.common import mean_nll
from trainers.spec import LossInputs, LossOutput, LossSpec


@dataclass(frozen=True)
class SFTParams:
    """SFT has no hyperparameters; the dataclass exists so every loss binds parameters the same way."""


def sft_loss(inputs: LossInputs, params: SFTParams) -> LossOutput:
    """Token-mean negative log-likelihood of y+ (seed 000, eq. 3):

        L = -(1/T+) Σ_t log π(y+_t | x+, y+_<t)

    Shapes: policy_chosen_logps [B] (summed over response tokens), chosen_lengths [B] -> losses [B].
    The rejected side is ignored, so SFT runs on the same pair data as the preference losses.
    """
    losses = mean_nll(inputs.policy_chosen_logps, inputs.chosen_lengths)
    return LossOutput(losses=losses)


SFT = LossSpec(
    name="sft",
    fn=sft_loss,
    params=SFTParams,
    needs=frozenset(),
    summary="MLE on y+: token-mean negative log-likelihood (seed 000 eq. 3)",
)
