"""The CLI: one-line errors with exit code 2 and nothing written; train, re-run, validate, ls, runs."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalharness.cli import app

runner = CliRunner()


def _run(args, cwd):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, args, catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--loss", "dpoo"], "unknown loss 'dpoo'; did you mean 'dpo'"),
        (["train", "--loss", "dpo", "--set", "betta=0.1"], "has no parameter 'betta'; did you mean 'beta'?"),
        (["train", "--loss", "dpo", "--set", "beta=abc"], "parameter 'beta' expects float, got 'abc'"),
        (["train", "--loss", "dpo", "--set", "beta=-1"], "beta must be > 0"),
        (["train", "--loss", "dpo", "--data", "hh-rlhff"], "unknown dataset 'hh-rlhff'; did you mean 'hh-rlhf'?"),
        (["train", "--loss", "dpo", "--model", "tiny-lama"], "unknown model 'tiny-lama'; did you mean 'tiny-llama' or 'task-llama'?"),
        (["train", "--loss", "sft->dpo", "--set", "kto.beta=1"], "no loss 'kto' in 'sft->dpo'"),
        (["train", "--loss", "dpo", "--optimizer", "sgd"], "optimizer must be adamw or rmsprop"),
        (["ls", "lossess"], "unknown registry 'lossess'"),
    ],
)
def test_bad_arguments_are_one_line_errors_with_exit_2_and_write_nothing(tmp_path, args, message):
    result = _run(args, tmp_path)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert list(tmp_path.iterdir()) == []  # no store, no run directory


def test_malformed_data_names_file_line_and_field_and_writes_nothing(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "", "rejected": "c"}\n')
    result = _run(["train", "--loss", "dpo", "--data", "jsonl", "--path", str(data), "--max-steps", "1"], tmp_path)
    assert result.exit_code == 2
    assert "pairs.jsonl:2" in result.stderr and "'chosen'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_train_then_rerun_reports_finished_and_lists_the_run(tmp_path):
    args = ["train", "--loss", "dpo", "--limit", "24", "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3",
            "--max-length", "96", "--max-prompt-length", "48", "--no-progress"]
    first = _run(args, tmp_path)
    assert first.exit_code == 0, first.output
    assert "2 steps" in first.stdout and "reference log-probs:" in first.stdout and "checkpoint:" in first.stdout
    second = _run(args, tmp_path)
    assert second.exit_code == 0 and "already finished at step 2" in second.stdout
    listed = _run(["runs"], tmp_path)
    assert "finished" in listed.stdout and listed.stdout.count("\n") == 1
    assert (tmp_path / "evalharness.duckdb").exists()
    ckpt = first.stdout.split("checkpoint: ")[1].splitlines()[0].strip()
    assert (tmp_path / ckpt / "model.safetensors").exists()


def test_toml_config_with_stages_validates(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        'loss = "sft->dpo"\nmodel = "tiny-llama"\n[params]\n"dpo.beta" = 0.5\n'
        '[data]\nname = "synthetic"\nlimit = 16\n[train]\nmax_steps = 1\nbatch_size = 2\n'
    )
    result = _run(["validate", str(cfg)], tmp_path)
    assert result.exit_code == 0, result.output
    assert "stage 1: sft" in result.stdout and "stage 2: dpo" in result.stdout and "beta=0.5" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('loss = "dpo"\n[train]\nmax_stpes = 3\n')
    result = _run(["validate", str(bad)], tmp_path)
    assert result.exit_code == 2 and "unknown key 'max_stpes'; did you mean 'max_steps'?" in result.stderr


def test_ls_lists_losses_with_summaries(tmp_path):
    result = _run(["ls", "losses"], tmp_path)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("e-dpo ") for line in lines) and len(lines) >= 25


def test_help_explains_train(tmp_path):
    result = _run(["train", "--help"], tmp_path)
    assert result.exit_code == 0
    assert "resumes" in result.stdout and "--set" in result.stdout
    assert Path(tmp_path).exists()


def _python(code: str) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_command_that_needs_no_model_loads_neither_torch_nor_transformers():
    code = ("import sys\nfrom evalharness.cli import user_errors\nwith user_errors():\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    assert _python(code) == "[]"


def test_transformers_loaded_after_the_command_starts_is_quiet_and_shows_no_bars():
    code = ("from evalharness.cli import user_errors\nwith user_errors():\n"
            "    from transformers.utils import logging as l\n"
            "    print(l.get_verbosity() == l.ERROR, l.is_progress_bar_enabled())")
    assert _python(code) == "True False"


def test_a_bad_input_error_of_a_module_loaded_mid_command_is_one_line_and_exit_2():
    code = ("import sys, typer\nfrom evalharness.cli import user_errors\ntry:\n    with user_errors():\n"
            "        from trainers.spec import ParamError\n        raise ParamError('beta must be > 0')\n"
            "except typer.Exit as e:\n    print(e.exit_code)")
    assert _python(code) == "2"


def test_one_run_spelled_four_ways_on_the_command_line_and_once_in_a_file_trains_once(tmp_path):
    """A run's id hashes its bound config: DPO's default beta is 0.1, and ``0.1``, ``.1`` and ``1e-1`` are that float."""
    import json

    import duckdb

    args = ["train", "--loss", "dpo", "--limit", "8", "--max-steps", "1", "--batch-size", "2", "--max-length", "64",
            "--max-prompt-length", "32", "--no-progress"]
    first = _run(args, tmp_path)
    assert first.exit_code == 0 and "1 steps" in first.stdout, first.output
    for spelling in ("beta=0.1", "beta=.1", "beta=1e-1", "dpo.beta=0.1"):
        again = _run([*args, "--set", spelling], tmp_path)
        assert again.exit_code == 0 and "already finished at step 1" in again.stdout, (spelling, again.output)
    toml = tmp_path / "dpo.toml"
    toml.write_text('loss = "dpo"\n[params]\nbeta = 0.1\n[data]\nlimit = 8\n[train]\nmax_steps = 1\nbatch_size = 2\n'
                    'max_length = 64\nmax_prompt_length = 32\n')
    from_file = _run(["train", str(toml), "--no-progress"], tmp_path)
    assert "already finished at step 1" in from_file.stdout, from_file.output
    other = _run([*args, "--set", "beta=0.2"], tmp_path)
    assert other.exit_code == 0 and "1 steps" in other.stdout, other.output
    with duckdb.connect(str(tmp_path / "evalharness.duckdb"), read_only=True) as con:
        configs = [json.loads(c) for (c,) in con.execute("SELECT config FROM runs ORDER BY created_at").fetchall()]
    assert [c["params"] for c in configs] == [{"beta": 0.1}, {"beta": 0.2}]  # the bound parameters, defaults filled


def test_a_run_directory_written_under_an_unbound_run_id_is_resumed_and_another_runs_refused(tmp_path):
    import json

    args = ["train", "--loss", "dpo", "--limit", "8", "--max-steps", "1", "--batch-size", "2", "--max-length", "64",
            "--max-prompt-length", "32", "--no-progress", "--name", "pol"]
    assert _run([*args, "--set", "beta=0.1"], tmp_path).exit_code == 0
    marker = tmp_path / "runs" / "pol" / "config.json"
    written = json.loads(marker.read_text())
    # as releases before bound run ids wrote it: the id of the raw parameters, which were the --set text
    written["run_id"], written["config"]["params"] = "0" * 32, {"beta": "0.1"}
    marker.write_text(json.dumps(written))
    (tmp_path / "evalharness.duckdb").unlink()
    again = _run([*args, "--set", "beta=.1"], tmp_path)
    assert again.exit_code == 0 and "resumed from step 1" in again.stdout, again.output
    marker.write_text(json.dumps(written))
    other = _run([*args, "--set", "beta=0.2"], tmp_path)
    assert other.exit_code == 2 and "holds run 000000000000, not this run" in other.stderr
