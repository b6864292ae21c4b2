"""Training seeds as an axis of an experiment: ``seeds = [...]`` replicates a configuration as ``<name>-seed<k>``."""

import pytest
from typer.testing import CliRunner

from evalharness.config import ConfigError
from evalharness.experiment import parse_experiment

RUN = {"model": "tiny-llama", "max_steps": 2, "batch_size": 2, "max_length": 64, "max_prompt_length": 32,
       "data": {"name": "synthetic", "limit": 16}}


def _exp(runs, defaults=None, **sections):
    return {"name": "seeds", "defaults": {**RUN, **(defaults or {})}, "runs": runs, **sections}


def test_seeds_on_a_run_and_on_defaults_replicate_each_grid_point():
    exp = parse_experiment(_exp([{"name": "sft", "loss": "sft", "seeds": [0, 1, 2]},
                                 {"name": "dpo", "loss": "dpo", "init_from": "sft", "grid": {"beta": [0.1, 0.5]}}],
                                defaults={"seeds": [0, 1, 2]}))
    names = [r.name for r in exp.runs]
    assert names == ["sft-seed0", "sft-seed1", "sft-seed2", "dpo-beta0.1-seed0", "dpo-beta0.1-seed1",
                     "dpo-beta0.1-seed2", "dpo-beta0.5-seed0", "dpo-beta0.5-seed1", "dpo-beta0.5-seed2"]
    assert [r.config.seed for r in exp.runs] == [0, 1, 2] * 3
    assert [r.group for r in exp.runs] == ["sft"] * 3 + ["dpo-beta0.1"] * 3 + ["dpo-beta0.5"] * 3
    # each replicate starts from the SFT replicate of its own seed, so the seeds stay independent end to end
    assert exp.entry("dpo-beta0.5-seed2").config.init_from == "sft-seed2"
    assert exp.entry("dpo-beta0.5-seed2").after == ["sft-seed2"]
    # a run's own seeds replace the defaults'; without seeds a run is one run under its own name
    exp = parse_experiment(_exp([{"name": "sft", "loss": "sft", "seeds": [4]}, {"name": "b", "loss": "sft"}]))
    assert [(r.name, r.config.seed, r.group) for r in exp.runs] == [("sft-seed4", 4, "sft"), ("b", 0, None)]


def test_seeds_by_set_reach_every_run():
    exp = parse_experiment(_exp([{"name": "sft", "loss": "sft"}]), overrides={"seeds": [1, 2]})
    assert [r.name for r in exp.runs] == ["sft-seed1", "sft-seed2"]
    exp = parse_experiment(_exp([{"name": "sft", "loss": "sft"}]), overrides={"runs.sft.seeds": [3]})
    assert [r.name for r in exp.runs] == ["sft-seed3"]


@pytest.mark.parametrize("runs, defaults, message", [
    ([{"name": "a", "loss": "sft", "seeds": []}], {}, "seeds must be a non-empty list of integers"),
    ([{"name": "a", "loss": "sft", "seeds": [1, 1]}], {}, "seeds must be distinct"),
    ([{"name": "a", "loss": "sft", "seeds": [-1]}], {}, "seeds must be an integer in"),
    ([{"name": "a", "loss": "sft", "seeds": ["0"]}], {}, "seeds must be a non-empty list of integers"),
    ([{"name": "a", "loss": "sft", "seeds": [0, 1], "seed": 3}], {}, "set seeds .* or seed .*, not both"),
    ([{"name": "a", "loss": "sft", "seeds": [0]}, {"name": "a-seed0", "loss": "sft"}], {}, "'a-seed0' is used twice"),
    ([{"name": "sft", "loss": "sft", "seeds": [0, 1]}, {"name": "dpo", "loss": "dpo", "init_from": "sft"}], {},
     "init_from 'sft', which is replicated over seeds"),
    ([{"name": "sft", "loss": "sft", "seeds": [0, 1]}, {"name": "dpo", "loss": "dpo", "init_from": "sft",
                                                        "seeds": [5]}], {}, "'sft' is replicated over seeds as"),
])
def test_bad_seeds_are_one_line_before_anything_runs(runs, defaults, message):
    with pytest.raises(ConfigError, match=message):
        parse_experiment(_exp(runs, defaults))


def test_a_replicated_baseline_or_pairs_policy_names_its_replicates():
    with pytest.raises(ConfigError, match=r"baseline 'sft' is not a run .* as sft-seed0, sft-seed1; name one"):
        parse_experiment(_exp([{"name": "sft", "loss": "sft", "seeds": [0, 1]}], judge={"baseline": "sft"}))
    exp = parse_experiment(_exp([{"name": "sft", "loss": "sft", "seeds": [0, 1]}], judge={"baseline": "sft-seed1"}))
    assert exp.judge.baseline == "sft-seed1"


def test_dry_run_lists_the_replicates(tmp_path):
    from evalharness.cli import app

    path = tmp_path / "exp.toml"
    path.write_text('name = "seeds"\n[defaults]\nmodel = "tiny-llama"\nmax_steps = 2\nseeds = [0, 1]\n'
                    '[defaults.data]\nname = "synthetic"\nlimit = 16\n[[runs]]\nname = "sft"\nloss = "sft"\n'
                    '[generate]\nlimit = 2\n')
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--store", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 0, result.output
    assert "sft-seed0" in result.output and "sft-seed1" in result.output
    assert "seed 1 of sft" in result.output
    assert not (tmp_path / "s.duckdb").exists()


def test_a_replicated_runs_own_name_lists_its_replicates(tmp_path):
    # `-c dpo` on a store where dpo ran as dpo-seed0 and dpo-seed1: one command needs one run, so it is refused with
    # both named, never read as a model name or hub id
    from evalharness.store import Store

    store = Store(str(tmp_path / "s.duckdb"))
    for s in (0, 1):
        store.upsert_run(dict(run_id=f"{s}abc", name=f"dpo-seed{s}", loss="dpo", params={}, base_model="tiny-llama",
                              init_from=None, data={}, config={"seed": s}, code_version="0", status="finished",
                              out_dir=f"runs/dpo-seed{s}", final_step=2))
    store.upsert_run(dict(run_id="2abc", name="dpo-seedling", loss="dpo", params={}, base_model="tiny-llama",
                          init_from=None, data={}, config={}, code_version="0", status="finished",
                          out_dir="runs/x", final_step=2))
    with pytest.raises(ConfigError, match=r"'dpo' names 2 runs: 0abc \(dpo-seed0.*1abc \(dpo-seed1"):
        store.get_run("dpo")
    assert store.get_run("dpo-seed1")["run_id"] == "1abc" and store.get_run("dp") is None
