"""The quickstart: its file parses and dry-runs at both setups, and a reduced run end to end gives the board the
benchmark promises (every policy row over three seeds, the claims with verdicts)."""

import json

import duckdb
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.commands.experiment import QUICKSTART
from evalharness.experiment import load_experiment
from leaderboards.claims import VERDICTS

cli = CliRunner()
POLICIES = ["dpo", "exmate", "exo-pref"]


def test_the_file_is_the_benchmark_one_sft_model_three_seeds_claims():
    exp = load_experiment(QUICKSTART)
    runs = {r.name: r for r in exp.runs}
    assert list(runs) == ["sft", *(f"{p}-seed{s}" for p in POLICIES for s in range(3)), "rm"]
    assert {r.config.model for r in exp.runs} == {"task-llama"}
    assert runs["sft"].config.data.name == "synthetic:noise=0.5" and runs["sft"].group is None
    # one SFT model is the start (and so the reference) of every other run, and the judged baseline
    assert all(r.config.init_from == "sft" for name, r in runs.items() if name != "sft")
    assert exp.judge.baselines == ["sft"] and not exp.generate.base
    assert exp.generate.limit >= 64 and exp.generate.temperature == 1.0
    assert [j.spec for j in exp.judge.entries] == ["oracle", "reward-model:path=@rm"]
    assert {c.a for c in exp.claims} | {c.b for c in exp.claims} <= set(POLICIES) and len(exp.claims) >= 3


def test_quickstart_dry_runs_the_benchmark_and_the_smollm2_scale(tmp_path):
    store = str(tmp_path / "q.duckdb")
    out = cli.invoke(app, ["quickstart", "--dry-run", "--store", store])
    assert out.exit_code == 0, out.output
    assert "from task-llama" in out.output and "dpo-seed2" in out.output and "vs sft x 64 prompts" in out.output
    out = cli.invoke(app, ["quickstart", "--dry-run", "--model", "smollm2-135m", "--max-steps", "3", "--store", store])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("experiment quickstart-smollm2 ")
    assert "sft 3 steps x 4 from smollm2-135m" in out.output and "vs base x 8 prompts" in out.output
    assert "seed" not in out.output.split("store")[1].split("generate")[0]  # the scale trains each loss once
    assert not (tmp_path / "q.duckdb").exists()


SMALL = ["--set", "runs.sft.max_steps=3", "--set", "runs.sft.batch_size=8", "--set", "max_steps=2",
         "--set", "batch_size=4", "--set", "data.limit=24", "--set", "generate.limit=3", "--set", "generate.n=2",
         "--set", "generate.max_new_tokens=8", "--set", "judge.samples=2", "--set", "eval.bootstrap=20",
         "--set", "leaderboard.plot='plots'"]


def test_a_reduced_quickstart_gives_rows_of_three_seeds_and_claims_with_verdicts(tmp_path):
    store = str(tmp_path / "q.duckdb")
    out = cli.invoke(app, ["run", str(QUICKSTART), "--no-progress", "--store", store, *SMALL])
    assert out.exit_code == 0, out.output
    assert "claims (" in out.output
    out = cli.invoke(app, ["leaderboard", "--store", store, "--judge", "oracle", "--format", "json"])
    assert out.exit_code == 0, out.output
    board = json.loads(out.stdout)
    rows = [r for r in board["rows"] if not r["baseline"]]
    assert sorted(r["run"] for r in rows) == POLICIES
    assert all(r["seeds"] == 3 for r in rows) and board["meta"]["prompts"] == 3
    assert len(board["claims"]) == len(load_experiment(QUICKSTART).claims)
    assert all(c["verdict"] in VERDICTS for c in board["claims"])
    # the reward model judged too, against the same baseline
    with duckdb.connect(store, read_only=True) as con:
        (rm,) = con.execute("SELECT DISTINCT judge FROM judgments WHERE judge LIKE 'reward-model:%'").fetchone()
    out = cli.invoke(app, ["leaderboard", "--store", store, "--judge", rm, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert sorted(r["run"] for r in json.loads(out.stdout)["rows"] if not r["baseline"]) == POLICIES
