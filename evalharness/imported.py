"""The identity of judges imported from other leaderboards, which the importers write and the leaderboards read."""

from __future__ import annotations

JUDGE_PREFIX = "alpaca-eval:"
JUDGE_VERSION = "imported"
# AlpacaEval's win rate is the mean of (preference - 1): a draw counts half and a weighted annotator's probability
# counts as it is, which is the leaderboard's "average" tie policy.
NATIVE_TIES = "average"


def native_ties(judge: str, version: str) -> str | None:
    """The tie policy an imported judge's own leaderboard uses, or None for judges with no policy of their own."""
    return NATIVE_TIES if judge.startswith(JUDGE_PREFIX) and version == JUDGE_VERSION else None
