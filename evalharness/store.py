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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_PATH = "evalharness.duckdb"

# Forward-only: never edit a released migration, append a new one. Each runs once, in order, in a transaction.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "runs, checkpoints, train_metrics",
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,      -- content hash of the resolved training config
            name VARCHAR,
            loss VARCHAR,
            params JSON,
            base_model VARCHAR,
            init_from VARCHAR,               -- a run id or a checkpoint path this run started from
            data JSON,
            config JSON,                     -- the resolved config, everything bound
            code_version VARCHAR,
            status VARCHAR,                  -- running | finished | failed
            out_dir VARCHAR,
            final_step INTEGER,
            created_at TIMESTAMP,
            updated_at TIMESTAMP
        );
        CREATE TABLE checkpoints (
            checkpoint_id VARCHAR PRIMARY KEY,  -- hash(run_id, step)
            run_id VARCHAR,
            step INTEGER,
            path VARCHAR,
            is_final BOOLEAN,
            created_at TIMESTAMP
        );
        CREATE TABLE train_metrics (
            run_id VARCHAR,
            step INTEGER,
            name VARCHAR,
            value DOUBLE,
            PRIMARY KEY (run_id, step, name)
        );
        """,
    ),
    (
        "reference log-prob cache",
        """
        CREATE TABLE reference_logps (
            key VARCHAR PRIMARY KEY,   -- hash(reference fingerprint, prompt ids, response ids, temperature)
            model VARCHAR,             -- the reference model's weight fingerprint
            logp DOUBLE,               -- summed log-prob of the response tokens
            n_tokens INTEGER
        );
        """,
    ),
    (
        "prompts and generations",
        """
        CREATE TABLE prompts (
            prompt_id VARCHAR PRIMARY KEY,   -- content hash of the set, source id and messages
            prompt_set VARCHAR,
            source_id VARCHAR,
            messages JSON,
            reference VARCHAR,
            meta JSON
        );
        CREATE TABLE generations (
            generation_id VARCHAR PRIMARY KEY,  -- hash(checkpoint, prompt, turn, sampling, backend, sample index)
            checkpoint VARCHAR,                 -- checkpoint key: a run checkpoint id or model:<weights fingerprint>
            label VARCHAR,                      -- how leaderboards name it (run name:step or model name)
            checkpoint_path VARCHAR,
            prompt_id VARCHAR,
            turn INTEGER,                       -- 1-based: turn 2 of MT-Bench is conditioned on this sample's turn 1
            sample_index INTEGER,
            sampling JSON,
            temperature DOUBLE,
            backend VARCHAR,
            prompt_text VARCHAR,
            prompt_ids INTEGER[],               -- after the stated truncation (the prompt keeps its last tokens)
            text VARCHAR,
            token_ids INTEGER[],
            n_tokens INTEGER,
            finish_reason VARCHAR,
            prompt_truncated BOOLEAN,
            policy_logp DOUBLE,                 -- Σ log π(y_t|…) at the sampling temperature
            token_logps DOUBLE[],
            reference VARCHAR,                  -- the reference model's fingerprint key
            reference_logp DOUBLE,              -- Σ log ref(y_t|…) at the same temperature (NULL until scored)
            created_at TIMESTAMP
        );
        """,
    ),
    (
        "judgments, scores, metrics, diagnostics",
        """
        CREATE TABLE judgments (
            judgment_id VARCHAR PRIMARY KEY,    -- hash(cache_key, generation_first, generation_second)
            cache_key VARCHAR,                  -- hash(judge id, version, template, prompt, the two texts, order)
            judge VARCHAR,                      -- judge id (never holds a secret)
            judge_version VARCHAR,
            template VARCHAR,                   -- template name and content hash, '' for judges without one
            prompt_id VARCHAR,
            turn INTEGER,
            sample_index INTEGER,
            pair_id VARCHAR,                    -- hash(judge, template, prompt, turn, sample, model A, model B): both orders share it
            model_a VARCHAR,                    -- checkpoint key of the pair's first model (the one being rated)
            model_b VARCHAR,                    -- checkpoint key of the other (the baseline in --baseline mode)
            swapped BOOLEAN,                    -- false: A was shown first, true: B was shown first
            generation_first VARCHAR,
            generation_second VARCHAR,
            verdict VARCHAR,                    -- first | second | tie | unparsed | failed (positions as shown)
            probability DOUBLE,                 -- P(the first shown is preferred) where the judge gives one
            raw VARCHAR,
            latency DOUBLE,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost DOUBLE,
            error VARCHAR,
            created_at TIMESTAMP
        );
        CREATE INDEX judgments_cache ON judgments (cache_key);
        CREATE TABLE scores (
            score_id VARCHAR PRIMARY KEY,       -- hash(judge id, version, template, prompt, text)
            judge VARCHAR,
            judge_version VARCHAR,
            generation_id VARCHAR,
            prompt_id VARCHAR,
            score DOUBLE,
            created_at TIMESTAMP
        );
        CREATE TABLE metrics (
            metric_id VARCHAR PRIMARY KEY,      -- hash(checkpoint, dataset, metric, settings)
            checkpoint VARCHAR,                 -- checkpoint key, as in generations
            label VARCHAR,
            dataset VARCHAR,                    -- dataset or prompt-set name plus a content hash of what was read
            metric VARCHAR,
            value DOUBLE,
            n INTEGER,
            se DOUBLE,
            ci_low DOUBLE,
            ci_high DOUBLE,
            settings JSON,                      -- batch size, temperature, bootstrap resamples and seed…
            code_version VARCHAR,
            created_at TIMESTAMP
        );
        CREATE TABLE diagnostics (
            diagnostic_id VARCHAR PRIMARY KEY,  -- hash(kind, checkpoint, dataset, settings, name)
            kind VARCHAR,                       -- information-difference | gradient | monotonicity | density-ratio | beta-sensitivity
            checkpoint VARCHAR,
            dataset VARCHAR,
            name VARCHAR,
            value DOUBLE,
            data JSON,                          -- arrays behind a figure (distributions, per-step values)
            settings JSON,
            code_version VARCHAR,
            created_at TIMESTAMP
        );
        """,
    ),
    (
        "experiments",
        """
        CREATE TABLE experiments (
            experiment_id VARCHAR PRIMARY KEY,  -- content hash of the resolved experiment
            name VARCHAR,
            source VARCHAR,                     -- the TOML file it was read from
            config JSON,                        -- the resolved experiment: every run's bound config, grids expanded
            runs JSON,                          -- entry name to run id
            code_version VARCHAR,
            status VARCHAR,                     -- running | finished | failed
            created_at TIMESTAMP,
            updated_at TIMESTAMP
        );
        """,
    ),
    (
        "checkpoint weight fingerprints",
        """
        ALTER TABLE checkpoints ADD COLUMN fingerprint VARCHAR
        """,
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The store can't be opened or written (locked, read-only, full, damaged, from a newer version)."""


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


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

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        if not Path(self.path).exists():
            return None
        with self.connect() as con:
            cur = con.execute("SELECT * FROM runs WHERE run_id = ? OR name = ? ORDER BY created_at DESC", [run_id, run_id])
            rows = cur.fetchall()
            if not rows:
                rows = con.execute("SELECT * FROM runs WHERE run_id LIKE ?", [run_id + "%"]).fetchall()
                if len(rows) != 1:
                    return None
            cols = [d[0] for d in cur.description]
            return dict(zip(cols, rows[0]))

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
                bulk_insert(con, "INSERT OR REPLACE INTO train_metrics", rows)

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
                bulk_insert(con, "INSERT OR IGNORE INTO reference_logps", rows)


def bulk_insert(con, statement: str, rows: list[tuple]) -> None:
    """``statement`` ("INSERT … INTO table") for many rows in one query: one list per column, unnested together.

    DuckDB's executemany runs one statement per row (about 2 ms each); this is one statement for all of them.
    """
    columns = list(zip(*rows))
    select = ", ".join(f"unnest(${i + 1})" for i in range(len(columns)))
    con.execute(f"{statement} SELECT {select}", [list(c) for c in columns])


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
            con.execute("INSERT INTO _migrations VALUES (?, ?, ?)", [version, name, now()])
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
