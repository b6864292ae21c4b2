"""Paths and deletion: ``--restart`` removes only this run's own files and only once every input is known good; run
names stay one directory under ``runs/``; a stored checkpoint is found from any directory and is never other weights.

Each test drives the CLI in this process on tiny-llama with one training step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.reliability.helpers import files_under, invoke

TRAIN = ["train", "--loss", "sft", "--limit", "8", "--max-steps", "1", "--batch-size", "2", "--max-length", "64",
         "--max-prompt-length", "32", "--no-progress", "--store", "s.duckdb"]
GENERATE = ["generate", "--prompts", "synthetic", "--limit", "2", "--n", "1", "--max-new-tokens", "4", "--backend",
            "hf", "--no-progress"]


def _pairs(path: Path, n: int = 8) -> None:
    path.write_text("".join(json.dumps({"prompt": f"Item {i}?", "chosen": f"Good {i}.", "rejected": f"Bad {i}."})
                            + "\n" for i in range(n)))


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ 1. --restart deletes any directory


def test_restart_refuses_a_directory_that_holds_no_run_of_its_own(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "important.txt").write_text("x")
    err = _one_line_error(invoke(TRAIN + ["--out", "victim", "--restart"], tmp_path))
    assert "victim" in err and "config.json" in err, err
    assert (victim / "important.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no store, no run directory


def test_restart_on_bad_input_leaves_the_run_as_it_was(tmp_path):
    _pairs(tmp_path / "pairs.jsonl")
    args = TRAIN + ["--data", "jsonl", "--path", "pairs.jsonl", "--name", "r"]
    assert invoke(args, tmp_path).exit_code == 0
    before = _tree(tmp_path / "runs")
    rows = (tmp_path / "pairs.jsonl").read_text().splitlines(keepends=True)
    rows[1] = "{not json\n"  # the same path (so the same run), now with a damaged row
    (tmp_path / "pairs.jsonl").write_text("".join(rows))
    err = _one_line_error(invoke(args + ["--restart"], tmp_path))
    assert "pairs.jsonl:2" in err, err
    assert _tree(tmp_path / "runs") == before  # deleted nothing


def test_restart_with_name_dotdot_deletes_nothing(tmp_path):
    assert invoke(TRAIN + ["--name", "r"], tmp_path).exit_code == 0
    (tmp_path / "keep.txt").write_text("mine")
    before = _tree(tmp_path)
    _one_line_error(invoke(TRAIN + ["--name", "..", "--restart"], tmp_path))
    assert _tree(tmp_path) == before  # the store and the working directory are intact


def test_restart_retrains_and_removes_only_what_the_run_wrote(tmp_path):
    assert invoke(TRAIN + ["--name", "r"], tmp_path).exit_code == 0
    (tmp_path / "runs" / "r" / "notes.txt").write_text("the user's")
    again = invoke(TRAIN + ["--name", "r", "--restart"], tmp_path)
    assert again.exit_code == 0, again.output
    assert "1 steps" in again.stdout and "already finished" not in again.stdout, again.stdout
    run = tmp_path / "runs" / "r"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-000001", "config.json", "notes.txt"]
    assert (run / "notes.txt").read_text() == "the user's"


# ------------------------------------------------------------------------------------ 2. run names leave runs/


BAD_NAMES = ["../../x", "a/b", ".", "..", ".hidden", "-x", "a b", "a\nb", "a\x00b", "x" * 101, "", "pol:1", "@r"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_train_refuses_a_run_name_that_is_not_one_safe_path_component(tmp_path, name):
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    err = _one_line_error(invoke(TRAIN + ["--name", name], work))
    assert "run name" in err, err
    assert files_under(tmp_path) == []  # nothing written, here or above


def test_train_refuses_an_absolute_run_name(tmp_path):
    err = _one_line_error(invoke(TRAIN + ["--name", str(tmp_path / "elsewhere")], tmp_path))
    assert "run name" in err, err
    assert list(tmp_path.iterdir()) == []


def test_validate_and_experiments_refuse_the_same_names_and_accept_the_names_they_build(tmp_path):
    (tmp_path / "c.toml").write_text('loss = "sft"\nname = "../x"\n')
    assert "run name" in _one_line_error(invoke(["validate", "c.toml"], tmp_path))
    (tmp_path / "e.toml").write_text('name = "e"\n[defaults]\nmodel = "tiny-llama"\n'
                                     '[[runs]]\nname = "../sft"\nloss = "sft"\n')
    assert "run name" in _one_line_error(invoke(["run", "e.toml", "--dry-run", "--store", "s.duckdb"], tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "e.toml"]
    # what an experiment appends (grid suffixes) and what a recipe appends (stage names) stays valid
    (tmp_path / "e.toml").write_text('name = "e"\n[defaults]\nmodel = "tiny-llama"\n[[runs]]\nname = "dpo"\n'
                                     'loss = "sft->dpo"\ngrid = { "dpo.beta" = [0.1, 1e-5, 2] }\n')
    planned = invoke(["run", "e.toml", "--dry-run", "--store", "s.duckdb"], tmp_path)
    assert planned.exit_code == 0, planned.output


# ------------------------------------------------------------- 3. checkpoint paths relative to where train ran


def _two_runs_named_pol(tmp_path: Path) -> tuple[Path, Path]:
    """``a/`` holds run pol and its store; ``b/`` a different run also named pol, with its own store."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert invoke(TRAIN + ["--name", "pol"], a).exit_code == 0
    assert invoke(TRAIN + ["--name", "pol", "--seed", "1", "--lr", "1e-2"], b).exit_code == 0
    return a, b


def _sampled_from(store: Path) -> set[str]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return {p for (p,) in con.execute("SELECT DISTINCT checkpoint_path FROM generations").fetchall()}
    finally:
        con.close()


def test_a_run_is_sampled_from_its_own_weights_from_any_directory(tmp_path):
    a, b = _two_runs_named_pol(tmp_path)
    done = invoke(GENERATE + ["-c", "pol", "--store", "../a/s.duckdb"], b)
    assert done.exit_code == 0, done.output
    assert "pol:1:" in done.stdout
    assert _sampled_from(a / "s.duckdb") == {str((a / "runs" / "pol" / "checkpoint-000001").resolve())}


def test_other_weights_under_a_runs_checkpoint_path_are_refused(tmp_path):
    a, b = _two_runs_named_pol(tmp_path)
    weights = "checkpoint-000001/model.safetensors"
    shutil.copy(b / "runs" / "pol" / weights, a / "runs" / "pol" / weights)
    err = _one_line_error(invoke(GENERATE + ["-c", "pol", "--store", "s.duckdb"], a))
    assert "pol" in err and "fingerprint" in err, err
    assert _sampled_from(a / "s.duckdb") == set()


def test_an_old_relative_checkpoint_path_resolves_only_to_its_own_run(tmp_path):
    a, b = _two_runs_named_pol(tmp_path)
    con = duckdb.connect(str(a / "s.duckdb"))  # the row as releases before absolute paths wrote it
    con.execute("UPDATE checkpoints SET path = 'runs/pol/checkpoint-000001'")
    if "fingerprint" in {c for (c, *_) in con.execute("DESCRIBE checkpoints").fetchall()}:
        con.execute("UPDATE checkpoints SET fingerprint = NULL")
    con.close()
    own = str((a / "runs" / "pol" / "checkpoint-000001").resolve())
    done = invoke(GENERATE + ["-c", "pol", "--store", "s.duckdb"], a)  # where train ran: as before
    assert done.exit_code == 0, done.output
    assert _sampled_from(a / "s.duckdb") == {own}
    # b/runs/pol/checkpoint-000001 exists but belongs to b's run: the store's own run directory is used instead
    done = invoke(GENERATE + ["-c", "pol", "--store", "../a/s.duckdb", "--seed", "1"], b)
    assert done.exit_code == 0, done.output
    assert _sampled_from(a / "s.duckdb") == {own}
