"""The DuckDB store: one file, content-hash keys, numbered forward-only migrations.

Connections are short-lived: each operation opens the file, does its work in one transaction and closes it, so
other processes can read between writes. A second writer that finds the file locked waits a little, then stops with
a one-line message instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.migrations import MIGRATIONS, SCHEMA_VERSION
from evalharness.store_rows import (
    RECORDS,
    ClaimRecord,
    DiagnosticRecord,
    ExperimentRecord,
    GenerationRecord,
    JudgmentRecord,
    MetricRecord,
    PromptRecord,
    RatingRecord,
    RunAliasRecord,
    ScoreRecord,
    bulk_insert,
    insert_statement,
    now,
    select_columns,
    stamped,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Store", "StoreError", "bulk_insert", "code_version", "migrate", "now"]

DEFAULT_PATH = "evalharness.duckdb"


class StoreError(RuntimeError):
    """The store can't be opened or written (locked, read-only, full, damaged, from a newer version)."""


def _lock_timeout() -> float:
    """Seconds a writer waits for another process's connection to close: EVALHARNESS_LOCK_TIMEOUT, else 30."""
    try:
        return float(os.environ.get("EVALHARNESS_LOCK_TIMEOUT", "30"))
    except ValueError:
        value = os.environ["EVALHARNESS_LOCK_TIMEOUT"]
        raise StoreError(f"EVALHARNESS_LOCK_TIMEOUT={value!r} is not a number") from None


@dataclass
class Store:
    path: str = DEFAULT_PATH
    lock_timeout: float = field(default_factory=_lock_timeout)

    def __post_init__(self):
        self.path = str(self.path)
        self._migrated = False

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        import duckdb

        if read_only and not Path(self.path).exists():
            raise StoreError(f"{self.path}: no store here yet (run `evalharness train` first)")
        if not read_only:
            parent = Path(self.path).resolve().parent
            if not parent.exists():
                parent.mkdir(parents=True, exist_ok=True)
            if not os.access(parent, os.W_OK) or (Path(self.path).exists() and not os.access(self.path, os.W_OK)):
                raise StoreError(f"{self.path}: the store is not writable")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                con = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.Error as e:
                if _damaged(e):
                    raise self._damaged_error(e) from None
                if not isinstance(e, duckdb.IOException):
                    raise
                if not _locked(e):
                    raise StoreError(f"{self.path}: {_first_line(e)}") from None
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.path}: the store is locked by another process; waited "
                                     f"{self.lock_timeout:g} s ({_first_line(e)})") from None
                time.sleep(0.2)
        try:
            if not read_only and not self._migrated:
                migrate(con)
                self._migrated = True
            yield con
        except duckdb.Error as e:
            if _damaged(e):  # a damaged block is found when a query first reads it, not when the file is opened
                raise self._damaged_error(e) from None
            if isinstance(e, duckdb.IOException):
                raise StoreError(f"{self.path}: {_first_line(e)}") from None
            raise
        finally:
            con.close()

    def _damaged_error(self, e: BaseException) -> StoreError:
        # DuckDB checks a block when it reads it, before anything is written: the file is left for the user to save.
        what = ("is not a DuckDB database (its header is damaged, or it is another kind of file)"
                if "not a valid DuckDB" in str(e) else f"is damaged ({_first_line(e)})")
        return StoreError(f"{self.path}: the store file {what}; it was left as it is. Restore it from a backup, or "
                          "EXPORT DATABASE from a copy that still reads and IMPORT DATABASE into a new store (DuckDB)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        import duckdb

        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # a failed write may have ended the transaction already
                    con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except duckdb.TransactionException as e:  # the log could not be written (disk full): nothing committed
                raise StoreError(f"{self.path}: {_first_line(e)}") from None

    # --- runs -----------------------------------------------------------------------------------------------
    def upsert_run(self, run: dict[str, Any]) -> None:
        row = dict(run)
        for key in ("params", "data", "config"):
            row[key] = json.dumps(row.get(key), sort_keys=True)
        with self.transaction() as con:
            exists = con.execute("SELECT 1 FROM runs WHERE run_id = ?", [row["run_id"]]).fetchone()
            if exists:
                con.execute(
                    "UPDATE runs SET status = ?, out_dir = ?, final_step = ?, updated_at = ? WHERE run_id = ?",
                    [row.get("status"), row.get("out_dir"), row.get("final_step"), now(), row["run_id"]],
                )
            else:
                cols = [
                    "run_id", "name", "loss", "params", "base_model", "init_from", "data", "config",
                    "code_version", "status", "out_dir", "final_step",
                ]
                con.execute(
                    f"INSERT INTO runs ({', '.join(cols)}, created_at, updated_at) "
                    f"VALUES ({', '.join('?' for _ in cols)}, ?, ?)",
                    [row.get(c) for c in cols] + [now(), now()],
                )

    def set_run_status(self, run_id: str, status: str, final_step: int | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, final_step = COALESCE(?, final_step), updated_at = ? WHERE run_id = ?",
                [status, final_step, now(), run_id],
            )

    def get_run(self, ref: str) -> dict[str, Any] | None:
        """The run ``ref`` names: its id, its name, one of its aliases, or an id prefix; None where none matches.

        A name or prefix that matches several runs is a ConfigError listing them: picking one would read another
        run's results under the name asked for."""
        if not Path(self.path).exists():
            return None
        with self.connect() as con:
            cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [ref])
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
            if not rows:
                rows = con.execute(
                    "SELECT * FROM runs WHERE name = ? OR run_id IN (SELECT run_id FROM run_aliases WHERE alias = ?) "
                    "ORDER BY created_at", [ref, ref]).fetchall()
            if not rows and re.fullmatch(r"[0-9a-f]+", ref):
                rows = con.execute("SELECT * FROM runs WHERE run_id LIKE ? ORDER BY created_at", [ref + "%"]).fetchall()
            if not rows:  # an experiment's replicated run (<name>-seed<k>): one command needs one of them
                rows = [r for r in con.execute("SELECT * FROM runs WHERE starts_with(name, ?) ORDER BY created_at",
                                               [ref + "-seed"]).fetchall()
                        if re.fullmatch(rf"{re.escape(ref)}-seed\d+", r[cols.index("name")])]
                rows = rows if len(rows) > 1 else []
            if len(rows) > 1:
                from evalharness.config import ConfigError

                found = [dict(zip(cols, r)) for r in rows]
                listed = ", ".join(f"{r['run_id'][:12]} ({r['name']}, {r['loss']}, {r['status']})" for r in found)
                raise ConfigError(f"{ref!r} names {len(found)} runs: {listed}; give the run id instead")
            return dict(zip(cols, rows[0])) if rows else None

    def add_alias(self, alias: str, run_id: str) -> None:
        """Let ``alias`` name ``run_id`` too; an alias that named another run names this one from now on (a recipe
        trained again under its name with other settings)."""
        with self.transaction() as con:
            bulk_insert(con, insert_statement(RunAliasRecord, "REPLACE"), stamped([RunAliasRecord(alias, run_id)]))

    def aliases(self, run_id: str) -> list[str]:
        if not Path(self.path).exists():
            return []
        with self.connect() as con:
            return [a for (a,) in con.execute("SELECT alias FROM run_aliases WHERE run_id = ? ORDER BY alias",
                                              [run_id]).fetchall()]

    def runs(self) -> list[dict[str, Any]]:
        if not Path(self.path).exists():
            return []
        with self.connect() as con:
            cur = con.execute("SELECT * FROM runs ORDER BY created_at")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    # --- checkpoints and metrics -----------------------------------------------------------------------------
    def add_checkpoint(self, checkpoint_id: str, run_id: str, step: int, path: str, is_final: bool,
                       fingerprint: str | None = None) -> None:
        """``path`` is stored absolute, so any working directory finds it; ``fingerprint`` (of the weight files, see
        ``evalharness.models.model_fingerprint``) lets readers check that the files there are still these weights.
        Rows written before schema 6 hold the path as given (relative to where ``train`` ran) and no fingerprint."""
        with self.transaction() as con:
            con.execute("DELETE FROM checkpoints WHERE checkpoint_id = ?", [checkpoint_id])
            con.execute(
                "INSERT INTO checkpoints (checkpoint_id, run_id, step, path, is_final, created_at, fingerprint) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [checkpoint_id, run_id, step, str(Path(path).resolve()), is_final, now(), fingerprint],
            )

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            cur = con.execute("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", [run_id])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def add_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float]]) -> None:
        """Insert or replace (run, step, name) rows: a resumed run that re-does a step overwrites, never duplicates."""
        rows = [(run_id, int(s), n, float(v)) for s, n, v in rows]
        if rows:
            with self.transaction() as con:
                bulk_insert(con, "INSERT OR REPLACE INTO train_metrics (run_id, step, name, value)", rows)

    def metrics(self, run_id: str) -> list[tuple[int, str, float]]:
        with self.connect() as con:
            return con.execute(
                "SELECT step, name, value FROM train_metrics WHERE run_id = ? ORDER BY step, name", [run_id]
            ).fetchall()

    # --- reference log-prob cache --------------------------------------------------------------------------
    def get_reference_logps(self, keys: list[str]) -> dict[str, tuple[float, int]]:
        if not keys:
            return {}
        with self.connect() as con:
            rows = con.execute(
                "SELECT r.key, r.logp, r.n_tokens FROM reference_logps r JOIN (SELECT unnest(?) AS key) w USING (key)",
                [list(keys)],
            ).fetchall()
        return {k: (lp, n) for k, lp, n in rows}

    def put_reference_logps(self, model: str, rows: Iterable[tuple[str, float, int]]) -> None:
        rows = [(k, model, float(lp), int(n)) for k, lp, n in rows]
        if rows:
            with self.transaction() as con:
                bulk_insert(con, "INSERT OR IGNORE INTO reference_logps (key, model, logp, n_tokens)", rows)

    # --- typed rows: prompts, generations, judgments, scores, metrics, diagnostics, experiments ----------------
    def insert_rows(self, *groups: Sequence[Any]) -> dict[str, int]:
        """Each group (records of one table, see ``evalharness.store_rows``) in one transaction, a key the table
        has already kept as it is; returns the rows each table gained."""
        added: dict[str, int] = {}
        groups = tuple(g for g in groups if g)
        if groups:
            with self.transaction() as con:
                for rows in groups:
                    added[_table(rows)] = added.get(_table(rows), 0) + _insert(con, rows)
        return added

    def insert_prompts(self, rows: Sequence[PromptRecord]) -> int:
        return self.insert_rows(rows).get(PromptRecord.TABLE, 0)

    def insert_generations(self, rows: Sequence[GenerationRecord]) -> int:
        return self.insert_rows(rows).get(GenerationRecord.TABLE, 0)

    def insert_judgments(self, rows: Sequence[JudgmentRecord], replace_failed: Sequence[str] = ()) -> int:
        """One transaction: rows of ``replace_failed`` whose verdict is ``failed`` go, then ``rows`` are inserted.
        Only a failed row is replaced: a verdict another process stored meanwhile keeps its tokens and cost."""
        with self.transaction() as con:
            if replace_failed:
                con.execute("DELETE FROM judgments WHERE verdict = 'failed' AND judgment_id IN (SELECT unnest(?))",
                            [list(replace_failed)])
            return _insert(con, rows) if rows else 0

    def insert_ratings(self, rows: Sequence[RatingRecord], replace_failed: Sequence[str] = ()) -> int:
        """As ``insert_judgments``, for single-answer ratings: only a failed row is replaced."""
        with self.transaction() as con:
            if replace_failed:
                con.execute("DELETE FROM ratings WHERE status = 'failed' AND rating_id IN (SELECT unnest(?))",
                            [list(replace_failed)])
            return _insert(con, rows) if rows else 0

    def insert_scores(self, rows: Sequence[ScoreRecord]) -> int:
        return self.insert_rows(rows).get(ScoreRecord.TABLE, 0)

    def insert_metrics(self, rows: Sequence[MetricRecord]) -> int:
        return self.insert_rows(rows).get(MetricRecord.TABLE, 0)

    def insert_diagnostics(self, rows: Sequence[DiagnosticRecord]) -> int:
        return self.insert_rows(rows).get(DiagnosticRecord.TABLE, 0)

    def set_reference_logps(self, updates: Iterable[tuple[str, str, float]]) -> None:
        """(generation_id, reference key, Σ log ref) for generations scored under the reference model."""
        updates = list(updates)
        if updates:
            ids, refs, logps = (list(c) for c in zip(*updates))
            with self.transaction() as con:
                con.execute("UPDATE generations SET reference = u.ref, reference_logp = u.logp FROM (SELECT unnest($1) "
                            "AS id, unnest($2) AS ref, unnest($3) AS logp) u WHERE generation_id = u.id",
                            [ids, refs, [float(x) for x in logps]])

    def upsert_experiment(self, row: ExperimentRecord) -> None:
        """A new experiment is inserted; a known one gets its runs and status (its config and source stay)."""
        t = now()
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM experiments WHERE experiment_id = ?", [row.experiment_id]).fetchone():
                con.execute("UPDATE experiments SET runs = ?, status = ?, updated_at = ? WHERE experiment_id = ?",
                            [row.runs, row.status, t, row.experiment_id])
            else:
                _insert(con, [row._replace(created_at=row.created_at or t, updated_at=t)])

    def replace_claims(self, experiment_id: str, evaluation: str, rows: Sequence[ClaimRecord]) -> None:
        """One transaction: the verdicts stored for this experiment on this evaluation go, ``rows`` take their place
        (claims are re-evaluated as runs, seeds and scores are added; an edited claim replaces its old verdict)."""
        with self.transaction() as con:
            con.execute("DELETE FROM claims WHERE experiment_id = ? AND CAST(evaluation AS VARCHAR) = ?",
                        [experiment_id, evaluation])
            if rows:
                _insert(con, rows)

    def get_claims(self, experiment_ids: Sequence[str]) -> list[ClaimRecord]:
        """The stored verdicts of these experiments, in each one's claim order (latest evaluation first)."""
        rows = self._select(f"SELECT {select_columns(ClaimRecord)} FROM claims JOIN (SELECT unnest(?) AS k) "
                            "ON experiment_id = k ORDER BY created_at DESC, experiment_id, position", experiment_ids)
        return [ClaimRecord(*r) for r in rows]

    def stored_ids(self, record: type, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the record's table holds (its key column)."""
        key = record._fields[0]
        return {k for (k,) in self._select(f"SELECT {key} FROM {record.TABLE} JOIN (SELECT unnest(?) AS k) "
                                           f"ON {key} = k", ids)}

    def get_rows(self, record: type, ids: Sequence[str]) -> dict[str, Any]:
        """The stored rows of ``ids`` as ``record``s, by key; keys not stored are absent."""
        key = record._fields[0]
        rows = self._select(f"SELECT {select_columns(record)} FROM {record.TABLE} JOIN (SELECT unnest(?) AS k) "
                            f"ON {key} = k", ids)
        return {r[0]: record(*r) for r in rows}

    def get_prompts(self, ids: Sequence[str]) -> dict[str, PromptRecord]:
        return self.get_rows(PromptRecord, ids)

    def get_generations(self, ids: Sequence[str]) -> dict[str, GenerationRecord]:
        return self.get_rows(GenerationRecord, ids)

    def get_judgments(self, ids: Sequence[str]) -> dict[str, JudgmentRecord]:
        return self.get_rows(JudgmentRecord, ids)

    def get_scores(self, keys: Sequence[str]) -> dict[str, float]:
        """The pointwise scores stored under ``keys`` (``store_rows.score_key``): the one scores cache."""
        return dict(self._select("SELECT score_id, score FROM scores JOIN (SELECT unnest(?) AS k) ON score_id = k",
                                 keys))

    def get_metrics(self, ids: Sequence[str]) -> dict[str, MetricRecord]:
        return self.get_rows(MetricRecord, ids)

    def get_diagnostics(self, kind: str, checkpoint: str, dataset: str) -> list[DiagnosticRecord]:
        if not Path(self.path).exists():
            return []
        with self.connect() as con:
            rows = con.execute(f"SELECT {select_columns(DiagnosticRecord)} FROM diagnostics WHERE kind = ? AND "
                               "checkpoint = ? AND dataset = ?", [kind, checkpoint, dataset]).fetchall()
        return [DiagnosticRecord(*r) for r in rows]

    def get_experiment(self, experiment_id: str) -> ExperimentRecord | None:
        found = self.get_rows(ExperimentRecord, [experiment_id])
        return found.get(experiment_id)

    def _select(self, sql: str, ids: Sequence[str]) -> list[tuple]:
        """``sql`` with the list ``ids`` as its one parameter; nothing (and no store file made) when there is none."""
        if not ids or not Path(self.path).exists():
            return []
        with self.connect() as con:
            return con.execute(sql, [list(ids)]).fetchall()


def _table(rows: Sequence[Any]) -> str:
    record = type(rows[0])
    if record not in RECORDS or any(type(r) is not record for r in rows):
        raise TypeError(f"store rows must be records of one table (evalharness.store_rows), got {record.__name__}")
    return record.TABLE


def _insert(con, rows: Sequence[Any]) -> int:
    _table(rows)
    return bulk_insert(con, insert_statement(type(rows[0])), stamped(list(rows)))


def migrate(con) -> int:
    """Apply the migrations this store has not seen yet; return the schema version."""
    con.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    done = {v for (v,) in con.execute("SELECT version FROM _migrations").fetchall()}
    if done and max(done) > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {max(done)}, newer than this evalharness ({SCHEMA_VERSION}); upgrade evalharness"
        )
    for version, (name, sql) in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            # Statements are split on ";": keep semicolons out of migration comments.
            for statement in filter(None, (s.strip() for s in sql.split(";"))):
                con.execute(statement)
            con.execute("INSERT INTO _migrations (version, name, applied_at) VALUES (?, ?, ?)", [version, name, now()])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return SCHEMA_VERSION


def _damaged(e: BaseException) -> bool:
    """DuckDB's words for a file whose bytes are not what it wrote: a block failing its checksum, a broken header."""
    text = str(e)
    return "Corrupt database file" in text or "not a valid DuckDB database file" in text


def _locked(e: BaseException) -> bool:
    # The message quotes the file's path: a store under "blocks/" must not read as locked.
    return "lock" in re.sub(r'"[^"]*"', '""', str(e)).lower()


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def code_version() -> str:
    """The package version plus the git commit of the source tree when there is one."""
    from evalharness import __version__

    root = Path(__file__).resolve().parent.parent
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            commit = (root / ".git" / ref[5:]).read_text().strip()
        else:
            commit = ref
        return f"{__version__}+g{commit[:10]}"
    except OSError:
        return __version__
