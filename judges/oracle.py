"""The oracle judge: the synthetic task's gold reward, exact and free.

On the synthetic review task it gives gold win rates and gold reward-vs-KL frontiers, and serves as the reference
labels every other judge is measured against. On any other prompt set it still applies its rule (lexicon sentiment),
which is rarely what a researcher wants: the runner's report names the prompt set, so the mismatch is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalharness.data.synthetic import oracle_reward
from judges.base import Comparison, Verdict, verdict_from_scores


class OracleJudge:
    """``oracle``: pointwise gold reward in [-1, 1]; equal rewards are a tie."""

    id = "oracle"
    version = "1"
    template = ""

    def score(self, items: Sequence[tuple[tuple, str]]) -> list[float]:
        return [oracle_reward(text) for _, text in items]

    def compare(self, items: Sequence[Comparison]) -> list[Verdict]:
        return [verdict_from_scores(oracle_reward(c.first), oracle_reward(c.second)) for c in items]
