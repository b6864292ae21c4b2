"""The MT-Bench score column: each model's mean single-answer grade (FastChat's ``show_result.py`` in single mode).

Grades come from ``ratings`` (``evalharness.rating``). Only rated rows count: unparsed and failed ones are left out
and counted, as FastChat drops a grade of -1. The score is the mean grade over the board's turns (turn 1, turn 2, or
both pooled: FastChat's overall) with a percentile bootstrap CI over prompts (the board's resamples and seed, the same
draws as its win rates). Grades are read for the board's evaluation: its prompt set, turns and sampling setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalharness import evalkey
from evalharness.stats import percentile_ci
from leaderboards.query import EvalKey, JudgeVariant, LeaderboardError
from leaderboards.stats import resample_counts


@dataclass(frozen=True)
class Scores:
    """Per model key: ``mean`` grade, bootstrap ``low`` / ``high``, ``n`` grades counted; ``left_out`` unparsed or
    failed rows of the selection; ``variant`` the graded judge variant."""

    mean: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    n: dict[str, int]
    left_out: int
    variant: JudgeVariant


def rating_variants(con, prompt_set: str | None = None) -> list[JudgeVariant]:
    """Every (judge, version, template) with stored grades; none in a store older than the ratings table."""
    if not _has_ratings(con):
        return []
    where = " WHERE p.prompt_set = ?" if prompt_set is not None else ""
    rows = con.execute(f"SELECT r.judge, r.judge_version, r.template, count(*) FROM ratings r LEFT JOIN prompts p "
                       f"ON p.prompt_id = r.prompt_id{where} GROUP BY ALL ORDER BY 1, 2, 3",
                       [prompt_set] if prompt_set is not None else []).fetchall()
    return [JudgeVariant(*r) for r in rows]


def matching(variants: list[JudgeVariant], pairwise: JudgeVariant) -> JudgeVariant | None:
    """The graded variant to show beside a pairwise one: the same (judge, version, template), else the judge's only
    graded variant."""
    same = [v for v in variants if (v.judge, v.version, v.template) == (pairwise.judge, pairwise.version,
                                                                        pairwise.template)]
    if same:
        return same[0]
    by_judge = [v for v in variants if v.judge == pairwise.judge]
    return by_judge[0] if len(by_judge) == 1 else None


def select(variants: list[JudgeVariant], spec: str | None, template: str | None) -> JudgeVariant:
    """The graded variant a board of grades alone shows (``--judge``, ``--template``)."""
    from leaderboards.query import template_matches

    found = [v for v in variants if (spec is None or spec in (v.judge, f"{v.judge}@{v.version}"))
             and (template is None or template_matches(v.template, template))]
    if len(found) != 1:
        names = ", ".join(v.name for v in (found or variants))
        raise LeaderboardError(("no graded judge matches" if not found else f"{len(found)} graded judges match")
                               + f" (--judge, --template); graded here: {names}")
    return found[0]


def choose_key(con, variant: JudgeVariant, prompt_set: str | None, turn, temperature, sampling) -> EvalKey:
    """The prompt set, turns and sampling setting of a board of grades alone; a LeaderboardError lists candidates."""
    where = " AND coalesce(p.prompt_set, '?') = ?" if prompt_set is not None else ""
    rows = con.execute(
        "SELECT coalesce(p.prompt_set, '?'), r.turn, coalesce(CAST(g.sampling AS VARCHAR), ''), count(*) "
        "FROM ratings r LEFT JOIN prompts p ON p.prompt_id = r.prompt_id LEFT JOIN generations g "
        f"ON g.generation_id = r.generation_id WHERE r.judge = ? AND r.judge_version = ? AND r.template = ?{where} "
        "GROUP BY ALL ORDER BY 1, 2, 3",
        [variant.judge, variant.version, variant.template] + ([prompt_set] if prompt_set is not None else []),
    ).fetchall()
    sets = sorted({r[0] for r in rows})
    if len(sets) != 1:
        raise LeaderboardError(f"judge {variant.name} graded answers on {len(sets)} prompt sets"
                               + (f" ({', '.join(sets)}); choose one with --prompts" if sets else ""))
    turns = sorted({int(r[1]) for r in rows})
    if turn == "all" or (turn is None and len(turns) == 1):
        chosen = tuple(turns)
    elif turn in turns:
        chosen = (int(turn),)
    else:
        raise LeaderboardError(f"judge {variant.name} graded turns {', '.join(map(str, turns))} on {sets[0]!r}; "
                               + ("choose one with --turn N (or --turn all to pool them, FastChat's overall)"
                                  if turn is None else f"none at turn {turn}"))
    keys: dict[str, list[str]] = {}
    for _, t, raw, _ in rows:
        if t in chosen and evalkey.matches(evalkey.canonical(raw), temperature, sampling):
            keys.setdefault(evalkey.canonical(raw), []).append(raw)
    if len(keys) != 1:
        listing = "; ".join(evalkey.describe_with_id(k) for k in sorted(keys)) or "none at what was asked"
        raise LeaderboardError(f"judge {variant.name}'s grades on {sets[0]!r} are of {len(keys)} sampling settings "
                               f"({listing}); choose one with --temperature or --sampling ID")
    key, raw = next(iter(keys.items()))
    return EvalKey(sets[0], chosen, key, tuple(sorted(set(raw))))


def load_scores(con, variant: JudgeVariant, key: EvalKey, n_resamples: int, seed: int, level: float) -> Scores:
    """The mean grade per model over the evaluation ``key`` (prompt set, turns, sampling), with its CI."""
    rows = con.execute(
        "SELECT r.model, r.prompt_id, r.rating, r.status FROM ratings r LEFT JOIN prompts p "
        "ON p.prompt_id = r.prompt_id LEFT JOIN generations g ON g.generation_id = r.generation_id "
        "WHERE r.judge = ? AND r.judge_version = ? AND r.template = ? AND coalesce(p.prompt_set, '?') = ? "
        "AND list_contains(?, r.turn) AND list_contains(?, coalesce(CAST(g.sampling AS VARCHAR), ''))",
        [variant.judge, variant.version, variant.template, key.prompt_set, list(key.turns),
         list(key.raw) or [""]]).fetchall()
    rated = [r for r in rows if r[3] == "rated"]
    models = sorted({r[0] for r in rated})
    prompts = sorted({r[1] for r in rated})
    m_index, p_index = {k: i for i, k in enumerate(models)}, {k: i for i, k in enumerate(prompts)}
    mean, low, high, n = score_stats(np.array([m_index[r[0]] for r in rated], dtype=np.int64),
                                     np.array([p_index[r[1]] for r in rated], dtype=np.int64),
                                     np.array([r[2] for r in rated], dtype=np.float64), len(models), len(prompts),
                                     n_resamples, seed, level)
    as_dict = lambda x: {k: float(x[i]) for i, k in enumerate(models)}  # noqa: E731
    return Scores(as_dict(mean), as_dict(low), as_dict(high), {k: int(n[i]) for i, k in enumerate(models)},
                  len(rows) - len(rated), variant)


def score_stats(model: np.ndarray, prompt: np.ndarray, rating: np.ndarray, n_models: int, n_prompts: int,
                n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean grade per model (M,) with a percentile bootstrap CI resampling prompts, and the grades counted.

    ``model``, ``prompt`` (n,) indices and ``rating`` (n,) grades, one per graded answer (several per prompt where a
    prompt has two turns or several samples: they are resampled together with their prompt).

    >>> mean, low, high, n = score_stats(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([8.0, 6.0, 3.0]), 2, 2,
    ...                                  n_resamples=0)
    >>> mean.tolist(), n.tolist()
    ([7.0, 3.0], [2, 1])
    """
    from leaderboards.stats import group_sums

    s_y = group_sums(prompt, model, rating, n_prompts, n_models)
    s_n = group_sums(prompt, model, np.ones_like(rating), n_prompts, n_models)
    n = s_n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s_y.sum(axis=1) / n
        draws = [(c @ s_y.T) / (c @ s_n.T) for c in resample_counts(n_prompts, n_resamples, seed)]
    nan = np.full(n_models, np.nan)
    low, high = percentile_ci(np.concatenate(draws), level) if draws else (nan, nan)
    return mean, low, high, n.astype(np.int64)


def _has_ratings(con) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'ratings'")
                .fetchone()[0])
