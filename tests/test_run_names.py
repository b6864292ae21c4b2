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
