"""An experiment's judge names a reward model as `judge` and `eval` do (``evalharness.checkpoints``): ``@rm`` is the
experiment's own run, by its run id; ``path=RUN`` is a run in the store, by name, and a name of several runs is one
line listing them. Either way the weights are checked against the run's fingerprint."""

import pytest

from evalharness.config import ConfigError
from evalharness.experiment import Runner, load_experiment
from evalharness.hashing import content_hash
from evalharness.models import model_fingerprint
from evalharness.store import Store
from evalharness.tiny import build_tiny

EXPERIMENT = """
name = "rms"
[defaults]
model = "tiny-llama"
max_steps = 2
[[runs]]
name = "sft"
loss = "sft"
[[runs]]
name = "rm"
loss = "bradley-terry"
[[pairs]]
name = "onpolicy"
policy = "sft"
judge = "{pairs_judge}"
[judge]
judges = ["reward-model:path=@rm"]
"""


def _experiment(tmp_path, pairs_judge="reward-model:path=@rm"):
    path = tmp_path / "rms.toml"
    path.write_text(EXPERIMENT.format(pairs_judge=pairs_judge))
    return load_experiment(path)


def _stored_rm(store: Store, tmp_path, run_id: str, name: str, seed: int = 0):
    final = build_tiny("llama", tmp_path / "runs" / run_id / "checkpoint-000002", seed=seed, num_labels=1)
    store.upsert_run({"run_id": run_id, "name": name, "loss": "bradley-terry", "status": "finished"})
    store.add_checkpoint(content_hash(["checkpoint", run_id, 2]), run_id, 2, str(final), True,
                         model_fingerprint(final))
    return final


def test_at_rm_is_the_experiment_s_run_by_its_id_before_any_step_ran(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    exp = _experiment(tmp_path)
    runner = Runner(exp, store)
    final = _stored_rm(store, tmp_path, runner.final_run_id(exp.entry("rm")), "rm")
    _stored_rm(store, tmp_path, "f" * 32, "rm", seed=1)  # another experiment's "rm": never read for this one
    assert runner.bound_judge("reward-model:path=@rm,batch_size=2") == f"reward-model:path={final},batch_size=2"


def test_at_rm_not_trained_yet_is_one_line(tmp_path):
    exp = _experiment(tmp_path)
    with pytest.raises(ConfigError, match=r"'reward-model:path=@rm': @rm: run [0-9a-f]{12} is not in the store"):
        Runner(exp, Store(str(tmp_path / "s.duckdb"))).bound_judge("reward-model:path=@rm")


def test_a_run_in_the_store_is_named_by_path_as_judge_reads_it(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    final = _stored_rm(store, tmp_path, "a" * 32, "gold-rm")
    runner = Runner(_experiment(tmp_path, "reward-model:path=gold-rm"), store)
    assert runner.bound_judge(runner.exp.pairs[0].judge) == f"reward-model:path={final}"


def test_a_name_of_two_runs_is_an_error_listing_both(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    _stored_rm(store, tmp_path, "a" * 32, "gold-rm")
    _stored_rm(store, tmp_path, "b" * 32, "gold-rm", seed=1)
    runner = Runner(_experiment(tmp_path, "reward-model:path=gold-rm"), store)
    with pytest.raises(ConfigError) as e:
        runner.bound_judge(runner.exp.pairs[0].judge)
    message = str(e.value)
    assert "'gold-rm' names 2 runs: aaaaaaaaaaaa (gold-rm" in message and "bbbbbbbbbbbb (gold-rm" in message
    assert "give the run id instead" in message


def test_other_weights_under_the_run_s_name_are_refused(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    final = _stored_rm(store, tmp_path, "a" * 32, "gold-rm")
    other = build_tiny("llama", tmp_path / "other", seed=1, num_labels=1)
    (final / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    runner = Runner(_experiment(tmp_path, "reward-model:path=gold-rm"), store)
    with pytest.raises(ConfigError, match="holds other weights than the run saved"):
        runner.bound_judge(runner.exp.pairs[0].judge)
