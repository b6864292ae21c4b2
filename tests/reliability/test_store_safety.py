"""The store and the run directories on a disk that refuses writes, and stores written by earlier releases.

A full disk is simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG, "File too large", through the same
code paths as ENOSPC). Read-only files and directories are real file modes; when the tests run as root, the command
runs without CAP_DAC_OVERRIDE (dropped from its bounding set), so the modes bind it as they bind any user.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import resource
import shutil
import stat
import subprocess
from pathlib import Path

import duckdb
import pytest

from evalharness.store import SCHEMA_VERSION, Store
from tests.reliability.helpers import cli, files_under, invoke, snapshot
from tests.reliability.old_stores import UNRELEASED, VERSIONS, fixture
from tests.reliability.test_kill_resume import seed_pairs


def _limit_file_size(nbytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def _tables(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
    finally:
        con.close()


def _columns(path: Path) -> set[tuple[str, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return set(con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall())
    finally:
        con.close()


# --------------------------------------------------------------------------------------------------- a full disk


def test_a_full_disk_while_judging_is_one_line_and_leaves_the_store_as_it_was(tmp_path):
    seed_pairs(tmp_path / "s.duckdb", 100)
    before = snapshot(tmp_path / "s.duckdb", _tables(tmp_path / "s.duckdb"))
    args = ["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--prompts", "set", "--no-progress",
            "--no-leaderboard", "--store", "s.duckdb"]
    full = cli(args, tmp_path, preexec_fn=_limit_file_size(4096))  # the write-ahead log can't pass 4 KB
    assert full.returncode == 2, full.stderr
    err = full.stderr.strip()
    assert "\n" not in err and err.startswith("error: s.duckdb: ") and "File too large" in err, err
    assert snapshot(tmp_path / "s.duckdb", _tables(tmp_path / "s.duckdb")) == before  # no partial chunk
    again = invoke(args, tmp_path)  # space again: the same command completes
    assert again.exit_code == 0 and "200 judgments (0 already stored" in again.stdout, again.output


@pytest.mark.parametrize("limit, writer", [(300_000, "safetensors"), (600_000, "torch.save")])
def test_a_full_disk_while_training_is_one_line_and_resumes_when_there_is_space(tmp_path, limit, writer):
    args = ["train", "--loss", "dpo", "--limit", "8", "--max-steps", "2", "--batch-size", "2", "--max-length", "64",
            "--max-prompt-length", "32", "--name", "full", "--no-progress", "--store", "s.duckdb"]
    # The final checkpoint holds no optimizer state: the torch.save case fails on the step-1 checkpoint, which does.
    step = 2 if writer == "safetensors" else 1
    args += [] if writer == "safetensors" else ["--save-every", "1"]
    from evalharness.models import resolve_model

    resolve_model("tiny-llama")  # in the model cache before the disk fills
    # 300 KB: the weights (~460 KB, safetensors) do not fit; 600 KB: they do, the optimizer state (torch.save) does not.
    # The store fits in either (what does not fit in its file goes to its write-ahead log).
    full = cli(args, tmp_path, preexec_fn=_limit_file_size(limit))
    assert full.returncode == 2, full.stderr
    err = full.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"error: runs/full/checkpoint-00000{step}: could not write ("), err
    assert ("File too large" if writer == "safetensors" else "unexpected pos") in err, err
    assert "is the disk full or read-only?" in err
    assert files_under(tmp_path / "runs") == ["full/config.json"]  # the half-written checkpoint is gone
    again = invoke(args, tmp_path)
    assert again.exit_code == 0, again.output
    assert "checkpoint: runs/full/checkpoint-000002" in again.stdout


# ------------------------------------------------------------------------------------------------ read-only


def _without_permission_override():
    """Run the command without root's power to ignore file modes (an ordinary user needs nothing)."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop():
        for cap in (cap_dac_override, cap_dac_read_search):  # from the bounding set: exec can't give them back
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return drop


def _cli_unprivileged(args, cwd: Path):
    try:
        return cli(args, cwd, preexec_fn=_without_permission_override())
    except subprocess.SubprocessError as e:  # no CAP_SETPCAP (an unusual container): modes can't bind root here
        pytest.skip(f"can't drop root's permission override: {e}")


def test_a_read_only_store_refuses_writers_with_one_line_and_still_serves_readers(tmp_path):
    seed_pairs(tmp_path / "s.duckdb", 3)
    judge = ["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--prompts", "set", "--no-progress",
             "--no-leaderboard", "--store", "s.duckdb"]
    assert invoke(judge, tmp_path).exit_code == 0  # 3 pairs judged while it was writable
    (tmp_path / "s.duckdb").chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    before = snapshot(tmp_path / "s.duckdb", _tables(tmp_path / "s.duckdb"))

    writer = _cli_unprivileged(judge[:4] + ["b", "--baseline", "a"] + judge[7:], tmp_path)
    assert writer.returncode == 2, writer.stderr
    assert writer.stderr.strip() == "error: s.duckdb: the store is not writable"
    reader = _cli_unprivileged(["leaderboard", "--format", "json", "--bootstrap", "0", "--store", "s.duckdb"],
                               tmp_path)
    assert reader.returncode == 0, reader.stderr
    assert json.loads(reader.stdout)["meta"]["pairs"] == 3
    assert snapshot(tmp_path / "s.duckdb", _tables(tmp_path / "s.duckdb")) == before


def test_a_read_only_directory_is_one_line_and_creates_nothing(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        run = _cli_unprivileged(["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--store",
                                 "ro/s.duckdb"], tmp_path)
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip() == "error: ro/s.duckdb: the store is not writable"
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------------------------------- earlier releases


def test_every_earlier_released_schema_has_a_store_written_by_that_release():
    # Schema 1 never shipped on its own (tests/test_store.py simulates it), nor did 7 (old_stores.UNRELEASED).
    assert sorted(VERSIONS) == [v for v in range(1, SCHEMA_VERSION) if v not in UNRELEASED], (
        "a migration was added: build the previous schema's store with `python -m tests.reliability.old_stores`")


def _schema(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cols = con.execute("SELECT table_name, column_name, data_type, ordinal_position, is_nullable, column_default "
                           "FROM information_schema.columns ORDER BY 1, 4").fetchall()
        idx = con.execute("SELECT table_name, index_name, sql FROM duckdb_indexes() ORDER BY 1, 2").fetchall()
        keys = con.execute("SELECT table_name, constraint_type, constraint_column_names::VARCHAR "
                           "FROM duckdb_constraints() ORDER BY 1, 2, 3").fetchall()
        return cols + idx + keys
    finally:
        con.close()


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_a_store_written_by_an_earlier_release_migrates_with_every_row(tmp_path, version):
    old = tmp_path / "old.duckdb"
    with gzip.open(fixture(version), "rb") as src, open(old, "wb") as dst:
        shutil.copyfileobj(src, dst)
    tables = [t for t in _tables(old) if t != "_migrations"]
    before, old_columns = snapshot(old, tables), _columns(old)
    assert before["runs"] and before["train_metrics"] and before["checkpoints"]  # the release really wrote rows

    listed = invoke(["runs", "--store", "old.duckdb"], tmp_path)  # any writing command migrates
    assert listed.exit_code == 0, listed.output
    assert "finished" in listed.stdout and " old" in listed.stdout

    added = _columns(old) - old_columns  # columns of later migrations are new, not part of the old rows
    after = {t: snapshot(old, [t], drop={c for table, c in added if table == t})[t] for t in tables}
    assert after == before  # every old row, unchanged
    con = duckdb.connect(str(old), read_only=True)
    versions = [v for (v,) in con.execute("SELECT version FROM _migrations ORDER BY 1").fetchall()]
    con.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    fresh = tmp_path / "fresh.duckdb"
    with Store(str(fresh)).connect():  # a new store, migrated from nothing
        pass
    assert _schema(old) == _schema(fresh)  # the migrated schema is exactly a new store's

    if "generations" in tables:  # the old samples are judged by today's code; v4's verdicts are found, not redone
        judged = invoke(["judge", "--judge", "oracle", "--models", "old", "--baseline", "tiny-llama", "--samples",
                         "2", "--no-progress", "--no-leaderboard", "--store", "old.duckdb"], tmp_path)
        assert judged.exit_code == 0, judged.output
        # v3: 11 distinct comparisons (two samples' texts coincide), the twelfth reuses one; v4: all 12 stored
        want = "12 already stored, 0 reused from the cache, 0" if "judgments" in tables else \
            "0 already stored, 1 reused from the cache, 11"
        assert f"6 pairs, 12 judgments ({want} judged now" in judged.stdout, judged.stdout
