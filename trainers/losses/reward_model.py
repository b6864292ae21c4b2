"""Training a scalar reward model (a judge) on preference pairs: the Bradley-Terry loss.

The model is a reward head (need "reward_head"): the loop gives the scores s± = r(x±, y±) instead of log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.spec import LossInputs, LossOutput, LossSpec, check, logsigmoid


@dataclass
class BradleyTerryParams:
    # A constant margin the chosen score must clear; 0 is the plain Bradley-Terry likelihood (InstructGPT's RM loss).
    margin: float = 0.0
    # Weight of (s+ + s-)², which pins the score's free offset near 0; off by default, as in the plain BT loss.
    center_coef: float = 0.0

    def __post_init__(self):
        check(self.margin >= 0, f"margin must be >= 0, got {self.margin}")
        check(self.center_coef >= 0, f"center_coef must be >= 0, got {self.center_coef}")


def bradley_terry_loss(inputs: LossInputs, params: BradleyTerryParams) -> LossOutput:
    """Bradley-Terry reward-model loss with an optional margin and score-centering regulariser.

    Shapes: chosen/rejected scores [B] -> losses [B]; the logged rewards are the scores (detached).
    ``losses = -log σ(s+ - s- - m) + c·(s+ + s-)²``. The rewards are the scores, so the loop's logged accuracy
    (chosen reward > rejected reward) is the reward model's pairwise accuracy; a metric of the same name here would
    be counted twice.
    Sources: R. A. Bradley, M. E. Terry, "Rank Analysis of Incomplete Block Designs", Biometrika 1952; the RM loss of
    L. Ouyang et al., "Training language models to follow instructions with human feedback", 2022, arXiv:2203.02155;
    the margin as in H. Touvron et al., "Llama 2", 2023, arXiv:2307.09288 (there it varies with the rating; here it
    is a constant); the centering term from J. Eisenstein et al., "Helping or Herding? Reward Model Ensembles
    Mitigate but do not Eliminate Reward Hacking", 2023, arXiv:2312.09244.
    """
    chosen, rejected = inputs.chosen_scores, inputs.rejected_scores
    losses = -logsigmoid(chosen - rejected - params.margin) + params.center_coef * (chosen + rejected) ** 2
    return LossOutput(losses, chosen.detach(), rejected.detach())


BRADLEY_TERRY = LossSpec(
    name="bradley-terry",
    fn=bradley_terry_loss,
    params=BradleyTerryParams,
    needs=frozenset({"reward_head"}),
    summary="trains a scalar reward model",
)
