"""Names that cannot lie: a name that means several runs is refused with the list, a name asked for a config that
already ran names that run too, and a recipe's name is its last stage."""

import pytest

from evalharness.config import ConfigError, DataConfig, TrainConfig
from evalharness.store import Store
from trainers.loop import train


def _run(run_id, name, created=None):
    return dict(run_id=run_id, name=name, loss="dpo", params={}, base_model="tiny-llama", init_from=None, data={},
                config={}, code_version="0", status="finished", out_dir="x", final_step=2)


def _cfg(tmp_path, **kw):
    base = dict(loss="dpo", model="tiny-llama", data=DataConfig(name="synthetic", limit=8, eval_fraction=0.0),
                max_steps=1, batch_size=2, lr=1e-3, max_length=64, max_prompt_length=32, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_a_name_of_two_runs_is_an_error_listing_both(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    store.upsert_run(_run("aaaa1111", "rm"))
    store.upsert_run(_run("bbbb2222", "rm"))
    with pytest.raises(ConfigError, match=r"'rm' names 2 runs: aaaa1111 \(rm, dpo, finished\), bbbb2222 \(rm"):
        store.get_run("rm")
    assert store.get_run("bbbb2222")["run_id"] == "bbbb2222"  # the id still picks one


def test_an_id_prefix_of_two_runs_is_an_error_and_a_name_is_not_read_as_a_prefix(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    store.upsert_run(_run("abc111", "one"))
    store.upsert_run(_run("abc222", "two"))
    with pytest.raises(ConfigError, match="'abc' names 2 runs"):
        store.get_run("abc")
    assert store.get_run("abc1")["name"] == "one"
    assert store.get_run("a_c") is None


def test_an_alias_names_its_run_and_moves_when_given_again(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    store.upsert_run(_run("aaaa1111", "first"))
    store.upsert_run(_run("bbbb2222", "second"))
    store.add_alias("best", "aaaa1111")
    assert store.get_run("best")["run_id"] == "aaaa1111"
    store.add_alias("best", "bbbb2222")
    assert store.get_run("best")["run_id"] == "bbbb2222" and store.aliases("aaaa1111") == []


def test_a_name_asked_for_a_config_that_already_ran_names_that_run(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    [first] = train(_cfg(tmp_path, name="old", out=str(tmp_path / "old")), store, progress=False)
    [again] = train(_cfg(tmp_path, name="new", out=str(tmp_path / "new")), store, progress=False)
    assert again.status == "already-finished" and again.run_id == first.run_id
    assert again.notes == [f"this config already ran as 'old' (run {first.run_id[:12]}); 'new' now names that run too"]
    assert store.get_run("new")["run_id"] == store.get_run("old")["run_id"] == first.run_id


def test_a_recipe_answers_to_its_name_as_its_last_stage_and_each_stage_to_its_own(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    sft, dpo = train(_cfg(tmp_path, loss="sft->dpo", name="X", out=str(tmp_path / "x")), store, progress=False)
    assert store.get_run("X")["run_id"] == dpo.run_id
    assert store.get_run("X-stage1-sft")["run_id"] == sft.run_id
    assert store.get_run("X-stage2-dpo")["run_id"] == dpo.run_id
    assert dpo.notes == [f"'X' names the last stage, run {dpo.run_id[:12]} (X-stage2-dpo)"]


@pytest.fixture(scope="module")
def rm_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    store = Store(str(tmp / "s.duckdb"))
    train(_cfg(tmp, loss="bradley-terry", name="rm", out=str(tmp / "rm")), store, progress=False)
    return store


def test_a_reward_model_run_is_not_sampled_as_a_policy(rm_store):
    from evalharness.generate import resolve_target

    with pytest.raises(ConfigError, match=r"run rm:1 is a reward model, not a policy: .*--judge reward-model:path=rm"):
        resolve_target("rm", rm_store, None)


def test_reward_model_path_may_name_a_run_of_the_store(rm_store, tmp_path):
    from evalharness.checkpoints import final_checkpoint, with_run_checkpoints

    final = final_checkpoint("rm", rm_store)
    assert with_run_checkpoints("reward-model:path=rm,batch_size=4", rm_store) == \
        f"reward-model:path={final},batch_size=4"
    assert with_run_checkpoints(f"reward-model:path={tmp_path}", rm_store) == f"reward-model:path={tmp_path}"
    assert with_run_checkpoints("reward-model:path=nothing", rm_store) == "reward-model:path=nothing"


def test_judge_takes_reward_model_path_as_a_run_name(rm_store, tmp_path):
    import shutil

    from evalharness.judging import JudgeConfig, judge
    from tests.test_judging import seed_store

    shutil.copy(rm_store.path, tmp_path / "s.duckdb")
    store = seed_store(tmp_path / "s.duckdb", {"a": ["good"] * 4, "b": ["bad bad"] * 4})
    report = judge(JudgeConfig("reward-model:path=rm", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert report.judge.startswith("reward-model:") and report.judgments == 8 and report.failed == 0


def test_judge_refuses_a_model_name_of_two_runs_with_the_list(tmp_path):
    from evalharness.judging import JudgeConfig, judge
    from tests.test_judging import seed_store

    store = seed_store(tmp_path / "s.duckdb", {"rm:2": ["good"] * 4, "b": ["bad bad"] * 4})
    store.upsert_run(_run("aaaa1111", "rm"))
    store.upsert_run(_run("bbbb2222", "rm"))
    with pytest.raises(ConfigError, match=r"'rm' names 2 runs: aaaa1111"):
        judge(JudgeConfig("oracle", ["rm"], baseline="b", prompts="set"), store, progress=False)


def test_generate_of_a_reward_model_run_or_an_ambiguous_name_is_one_line_exit_2_and_writes_nothing(rm_store):
    from typer.testing import CliRunner

    from evalharness.cli import app

    def generate(name):
        return CliRunner().invoke(app, ["generate", "-c", name, "--limit", "1", "--backend", "hf", "--no-progress",
                                        "--store", rm_store.path], catch_exceptions=False)

    def prompts():
        with rm_store.connect() as con:
            return con.execute("SELECT count(*) FROM prompts").fetchone()[0]

    done = generate("rm")
    assert done.exit_code == 2 and done.output.startswith("error: run rm:1 is a reward model, not a policy")
    assert len(done.output.strip().splitlines()) == 1 and prompts() == 0
    rm_store.upsert_run(_run("ffff0000", "twice"))
    rm_store.upsert_run(_run("ffff1111", "twice"))
    done = generate("twice")
    assert done.exit_code == 2, done.output
    assert done.output.strip() == ("error: 'twice' names 2 runs: ffff0000 (twice, dpo, finished), ffff1111 (twice, "
                                   "dpo, finished); give the run id instead")
    assert prompts() == 0
