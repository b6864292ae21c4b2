"""What a leaderboard is built from (``LeaderboardConfig``: the judge, the evaluation and the statistics' settings)
and what it is (``Leaderboard``: flat, JSON-ready rows and the meta that says how they were computed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leaderboards import lc, selection, stats
from leaderboards.query import LeaderboardError


@dataclass(frozen=True)
class LeaderboardConfig:
    judge: str | None = None  # JUDGE or JUDGE@VERSION; None: the only judge in the store
    baseline: str | None = None  # a checkpoint key, label or key prefix
    prompt_set: str | None = None
    ties: str | None = None  # None: the judge's own policy (``evalharness.imported.native_ties``), else "tie"
    n_resamples: int = 1000  # bootstrap resamples of prompts
    seed: int = 0
    level: float = 0.95
    order_rule: str = "agree"  # the rule boards used before rules were named, so stored numbers do not move
    lc: str = "alpacaeval-v1"
    instruction_difficulty: str | None = None  # a CSV of AlpacaEval's estimates (``lc.read_difficulty``)
    # Which evaluation (``leaderboards.selection``); None: the only one the store holds, else an error lists them.
    template: str | None = None  # the judge's template: NAME, NAME@HASH or a prefix
    turn: int | str | None = None  # a turn number, or "all" to pool the turns
    temperature: float | str | None = None  # a number (0: greedy) or a per-category rule such as "fastchat"
    sampling: str | None = None  # a setting's short id, where two settings share a temperature
    held_out: str | None = None  # the held-out evaluation of perplexity, agility and margins
    bt_games: str = "pairs"  # "arena-hard": each order a game, a strong verdict three (``stats.arena_hard_games``)
    per_seed: bool = False  # True: a row per seed replicate, as boards were before replicates were combined
    # Only the pairs between these checkpoint keys (an experiment's own models, in a store other experiments share);
    # None: every model judged under the evaluation.
    models: tuple[str, ...] | None = None
    # The same by name (``leaderboard --models``): checkpoint keys, labels or unique key prefixes, resolved against
    # the evaluation's models as --baseline is; an unknown or ambiguous name is an error that lists the candidates.
    model_names: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "turn", selection.parse_turn(self.turn))
        object.__setattr__(self, "temperature", selection.parse_temperature(self.temperature))
        if self.ties is not None and self.ties not in stats.TIE_POLICIES:
            raise LeaderboardError(f"--ties must be one of {', '.join(stats.TIE_POLICIES)}, got {self.ties!r}")
        if self.order_rule not in stats.ORDER_RULES:
            raise LeaderboardError(f"--order-rule must be one of {', '.join(stats.ORDER_RULES)}, "
                                   f"got {self.order_rule!r}")
        if self.lc not in lc.LC_METHODS:
            raise LeaderboardError(f"--lc must be one of {', '.join(lc.LC_METHODS)}, got {self.lc!r}")
        if self.instruction_difficulty is not None and self.lc != "alpacaeval-v1":
            raise LeaderboardError("--instruction-difficulty is used only by --lc alpacaeval-v1")
        if self.bt_games not in stats.BT_GAMES:
            raise LeaderboardError(f"--bt-games must be one of {', '.join(stats.BT_GAMES)}, got {self.bt_games!r}")
        if self.n_resamples < 0:
            raise LeaderboardError(f"--bootstrap must be >= 0, got {self.n_resamples}")
        if not 0.0 < self.level < 1.0:
            raise LeaderboardError(f"the CI level must be in (0, 1), got {self.level}")


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

