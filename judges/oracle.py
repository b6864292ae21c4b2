"""The oracle judge: the synthetic task's gold reward, exact and free.

On the synthetic review task it gives gold win rates and gold reward-vs-KL frontiers, and serves as the reference
labels every other judge is measured against. On any other prompt set it still applies its rule (lexicon sentiment),
which is rarely what a researcher wants: it warns (once per judge) when a prompt it is given is not the task's
(``evalharness.data.synthetic.off_task_warning``), as one ``warning: …`` line on stderr: a Python warning would show
the user this module's source line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from evalharness.data.synthetic import off_task_warning, oracle_reward
from judges.base import Comparison, JudgeError, Verdict, verdict_from_scores


class OracleJudge:
    """``oracle``: pointwise gold reward in [-1, 1]; equal rewards are a tie.

    ``oracle:length_weight=W`` scores with the task's length component (``oracle_reward``), the reward that labels
    ``synthetic:length_weight=W``; its id names the weight, so its verdicts are stored apart from the plain oracle's.
    """

    version = "1"
    template = ""

    def __init__(self, length_weight: float = 0.0):
        if not -10.0 <= length_weight <= 10.0:  # the range the dataset option takes; also refuses nan
            raise JudgeError(f"oracle: length_weight must be in [-10, 10], got {length_weight!r}")
        self.length_weight = length_weight
        self.id = "oracle" if not length_weight else f"oracle+length{length_weight:g}"
        self._warned = False

    def score(self, items: Sequence[tuple[tuple, str]]) -> list[float]:
        self._check([msgs for msgs, _ in items])
        return [oracle_reward(text, self.length_weight) for _, text in items]

    def compare(self, items: Sequence[Comparison]) -> list[Verdict]:
        self._check([c.messages for c in items])
        w = self.length_weight
        return [verdict_from_scores(oracle_reward(c.first, w), oracle_reward(c.second, w)) for c in items]

    def _check(self, conversations) -> None:
        message = None if self._warned else off_task_warning(conversations, "the oracle judge")
        if message:
            self._warned = True
            print(f"warning: {message}", file=sys.stderr)
