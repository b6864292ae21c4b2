"""The one loop every diagnostic runs: each of its units read back from the store or computed and stored once, then
its table and figure rendered from the stored rows.

A diagnostic supplies only what differs (a ``Plan``): its jobs, each a unit with the function that computes its rows,
and its renderers. The runner does the rest the same way for all of them: the cache, the computed/cached counts, and
the figure's name, which hashes the units in order, each once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evalharness.diagnose import common
from evalharness.diagnose.common import Row, Unit


@dataclass(frozen=True)
class Job:
    unit: Unit
    compute: Callable[[], list[Row]]  # called only when the unit is not in the store
    key: tuple = ()  # what the renderers see before the rows: a result is (*key, rows)


def _no_notes(results: list) -> list[str]:
    return []


@dataclass
class Plan:
    name: str  # the CLI kind: the report's and the figure's name
    jobs: Iterable[Job]  # consumed lazily, so a job may depend on what earlier jobs loaded
    table: Callable[[list], str]  # results -> the text table
    figure: Callable[[list, str, list], Path]  # (results, out dir, figure name parts) -> the PNG written
    # Read after every job ran: computes append their notes (e.g. skipped pairs) to a list this closes over.
    notes: Callable[[list], list[str]] = field(default=_no_notes)


def execute(plan: Plan, store, out: str) -> common.Report:
    """Run ``plan``'s jobs on ``store`` and render its results; figures go to ``out``."""
    results, parts, computed, cached = [], [], 0, 0
    for job in plan.jobs:
        rows, fresh = common.cached(store, job.unit, job.compute)
        parts.append(job.unit.row_id(""))
        computed, cached = computed + fresh, cached + (not fresh)
        results.append((*job.key, rows))
    table = plan.table(results)
    png = plan.figure(results, out, parts)
    return common.Report(plan.name, table, png, computed, cached, plan.notes(results))
