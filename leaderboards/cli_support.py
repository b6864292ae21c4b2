"""The leaderboard as text for commands that print one after their own work (`evalharness judge`)."""

from __future__ import annotations

from pathlib import Path


def leaderboard_text(store: str | Path, judge: str | None = None, prompts: str | None = None,
                     baseline: str | None = None, fmt: str = "table", ties: str = "tie", n_resamples: int = 1000,
                     seed: int = 0, template: str | None = None, temperature: float | str | None = None,
                     sampling: str | None = None, turn: int | str | None = None) -> str:
    """The rendered leaderboard of one evaluation (``template``, ``temperature``, ``sampling``: what was judged); a
    request the store can't answer (e.g. a judge with several versions) comes back as one "leaderboard: …" line, so
    the command that judged does not fail after its work is stored."""
    from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
    from leaderboards.query import LeaderboardError
    from leaderboards.render import render

    try:
        board = build_leaderboard(store, LeaderboardConfig(judge, baseline, prompts, ties, n_resamples, seed,
                                                           template=template, temperature=temperature,
                                                           sampling=sampling, turn=turn))
    except LeaderboardError as e:
        return f"leaderboard: {e}\n"
    return render(leaderboard_table(board), fmt)
