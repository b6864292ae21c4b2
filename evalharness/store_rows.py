"""Typed rows of the store's tables, and the SQL that writes them.

Each record is a NamedTuple whose fields are its table's columns, key first: a row is already the tuple the insert
takes, so bulk writes cost no conversion, and every statement names its columns, so a migration that adds or reorders
columns cannot shift values into the wrong ones. ``TABLE`` names the table.

JSON columns hold text (``json.dumps`` by the writer, which decides on key order and NaN handling); ``created_at``
left as None is stamped when the row is inserted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

from evalharness.hashing import content_hash


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class PromptRecord(NamedTuple):
    TABLE = "prompts"
    prompt_id: str
    prompt_set: str
    source_id: str
    messages: str  # JSON [{role, content}]
    reference: str | None
    meta: str  # JSON


class GenerationRecord(NamedTuple):
    TABLE = "generations"
    generation_id: str
    checkpoint: str
    label: str
    checkpoint_path: str | None
    prompt_id: str
    turn: int
    sample_index: int
    sampling: str  # JSON
    temperature: float | None
    backend: str
    prompt_text: str | None
    prompt_ids: list[int] | None
    text: str
    token_ids: list[int] | None
    n_tokens: int | None
    finish_reason: str | None
    prompt_truncated: bool | None
    policy_logp: float | None
    token_logps: list[float] | None
    reference: str | None = None
    reference_logp: float | None = None
    created_at: datetime | None = None


class JudgmentRecord(NamedTuple):
    TABLE = "judgments"
    judgment_id: str
    cache_key: str
    judge: str
    judge_version: str
    template: str
    prompt_id: str
    turn: int
    sample_index: int
    pair_id: str
    model_a: str
    model_b: str
    swapped: bool
    generation_first: str
    generation_second: str
    verdict: str
    probability: float | None
    raw: str | None
    latency: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    error: str | None
    created_at: datetime | None = None
    strong: bool | None = None  # a strong verdict (Arena-Hard's [[A>>B]]); None for formats without levels


class ScoreRecord(NamedTuple):
    TABLE = "scores"
    score_id: str  # score_key(judge, messages, text)
    judge: str
    judge_version: str
    generation_id: str | None
    prompt_id: str | None
    score: float
    created_at: datetime | None = None


class RatingRecord(NamedTuple):
    TABLE = "ratings"
    rating_id: str
    cache_key: str
    judge: str
    judge_version: str
    template: str
    prompt_id: str
    turn: int
    sample_index: int
    model: str
    generation_id: str
    rating: float | None
    status: str  # rated | unparsed | failed
    raw: str | None
    latency: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    error: str | None
    created_at: datetime | None = None


class MetricRecord(NamedTuple):
    TABLE = "metrics"
    metric_id: str
    checkpoint: str
    label: str
    dataset: str
    metric: str
    value: float | None
    n: int | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    settings: str  # JSON
    code_version: str
    created_at: datetime | None = None


class DiagnosticRecord(NamedTuple):
    TABLE = "diagnostics"
    diagnostic_id: str
    kind: str
    checkpoint: str
    dataset: str
    name: str
    value: float | None
    data: str  # JSON
    settings: str  # JSON
    code_version: str
    created_at: datetime | None = None


class ExperimentRecord(NamedTuple):
    TABLE = "experiments"
    experiment_id: str
    name: str
    source: str
    config: str  # JSON
    runs: str  # JSON: entry name -> run id
    code_version: str
    status: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RunAliasRecord(NamedTuple):
    TABLE = "run_aliases"
    alias: str
    run_id: str
    created_at: datetime | None = None


class ClaimRecord(NamedTuple):
    TABLE = "claims"
    claim_id: str
    experiment_id: str
    evaluation: str  # JSON
    position: int
    text: str
    claim: str  # JSON
    verdict: str
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    result: str  # JSON
    code_version: str
    created_at: datetime | None = None


RECORDS: tuple[type, ...] = (PromptRecord, GenerationRecord, JudgmentRecord, ScoreRecord, RatingRecord, MetricRecord,
                             DiagnosticRecord, ExperimentRecord, RunAliasRecord, ClaimRecord)


def insert_statement(record: type, conflict: str = "IGNORE") -> str:
    """``INSERT OR <conflict> INTO table (every column)``, for ``bulk_insert``."""
    return f"INSERT OR {conflict} INTO {record.TABLE} ({', '.join(record._fields)})"


def select_columns(record: type) -> str:
    return ", ".join(record._fields)


def stamped(rows: list[Any]) -> list[Any]:
    """Rows with ``created_at`` (and ``updated_at``) set where the writer left them None."""
    if not rows or "created_at" not in rows[0]._fields or all(r.created_at is not None for r in rows):
        return rows
    t = now()
    stamp = {f: t for f in ("created_at", "updated_at") if f in rows[0]._fields}
    return [r if r.created_at is not None else r._replace(**stamp) for r in rows]


def bulk_insert(con, statement: str, rows: list[tuple]) -> int:
    """``statement`` ("INSERT … INTO table (columns)") for many rows in one query: one list per column, unnested
    together; returns how many rows were inserted (an OR IGNORE insert skips the keys the table has).

    DuckDB's executemany runs one statement per row (about 2 ms each); this is one statement for all of them.
    """
    columns = list(zip(*rows))
    select = ", ".join(f"unnest(${i + 1})" for i in range(len(columns)))
    found = con.execute(f"{statement} SELECT {select}", [list(c) for c in columns]).fetchone()
    return int(found[0]) if found else 0


def score_key(judge, messages, text: str) -> str:
    """The ``scores`` key of one response under a pointwise judge: hash(judge id, version, template, conversation,
    text). Judging, the eval's reward metrics and on-policy pairs all read and write scores under this key."""
    return content_hash(["score", judge.id, judge.version, judge.template, [list(m) for m in messages], text])
