"""`evalharness run`: grids, recipes, on-policy pairs, the plan, resume, and the stored experiment, on tiny models."""

import json

import pytest

from evalharness.config import ConfigError, parse_value
from evalharness.experiment import Runner, load_experiment, parse_experiment
from evalharness.store import Store

TINY = """
name = "tiny"
[defaults]
model = "tiny-llama"
max_steps = 2
batch_size = 2
max_length = 64
max_prompt_length = 32
lr = 1e-3
[defaults.data]
name = "synthetic"
limit = 16
eval_fraction = 0.25

[[runs]]
name = "sft"
loss = "sft"

[[runs]]
name = "dpo"
loss = "dpo"
init_from = "sft"
grid = { beta = [0.1, 0.5] }

[[runs]]
name = "onpolicy-dpo"
loss = "dpo"
init_from = "sft"
data = "@onpolicy"

[[runs]]
name = "rm"
loss = "bradley-terry"

[[pairs]]
name = "onpolicy"
policy = "sft"
limit = 6
n = 3
max_new_tokens = 12
judge = "length"      # a tiny random model writes no sentiment words, so the oracle would tie every sample

[generate]
limit = 3
n = 1
max_new_tokens = 8
backend = "hf"

[eval]
bootstrap = 50

[judge]
judges = ["oracle", "reward-model:path=@rm"]
baseline = "base"
"""


class LengthJudge:
    """Pointwise: the longer response scores higher."""

    id, version, template = "length", "1", ""

    def score(self, items):
        return [float(len(text)) for _, text in items]

    def compare(self, items):
        from judges.base import verdict_from_scores

        return [verdict_from_scores(len(c.first), len(c.second)) for c in items]


@pytest.fixture(autouse=True)
def length_judge():
    from evalharness import plugins

    plugins.reset()
    plugins.registry("judges").add("length", LengthJudge, "test judge", source="tests")
    yield
    plugins.reset()


def _write(tmp_path, text=TINY):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_grids_expand_and_references_order_the_runs(tmp_path):
    exp = load_experiment(_write(tmp_path))
    assert [r.name for r in exp.runs] == ["sft", "dpo-beta0.1", "dpo-beta0.5", "onpolicy-dpo", "rm"]
    assert exp.entry("dpo-beta0.5").config.params == {"beta": 0.5}
    assert [r.reward_model for r in exp.runs] == [False, False, False, False, True]
    from evalharness.experiment import order

    names = order(exp)
    # every entry comes after what it needs: sft before the pairs built from it, the pairs before their consumer
    assert names.index("sft") < names.index("onpolicy") < names.index("onpolicy-dpo")
    assert names.index("sft") < names.index("dpo-beta0.1")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "\n[bogus]\n", "unknown section 'bogus'"),
    (lambda t: t.replace('baseline = "base"', 'baseline = "nobody"'), "baseline 'nobody' is not a run"),
    (lambda t: t.replace("path=@rm", "path=@sft"), "names @sft, which is not a reward-model run"),
    (lambda t: t.replace('init_from = "sft"\ngrid', 'init_from = "nowhere"\ngrid'), "'nowhere' is neither a run"),
    (lambda t: t.replace('data = "@onpolicy"', 'data = "@offpolicy"'), "'@offpolicy' is not a [[pairs]] entry"),
    (lambda t: t.replace("beta = [0.1, 0.5]", "betta = [0.1]"), "betta"),
    (lambda t: t.replace('name = "rm"', 'name = "sft"'), "entry name 'sft' is used twice"),
])
def test_bad_experiments_fail_before_anything_runs(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_experiment(_write(tmp_path, edit(TINY)))
    assert not (tmp_path / "s.duckdb").exists()


def test_a_cycle_is_an_error():
    raw = {"name": "c", "defaults": {"model": "tiny-llama"},
           "runs": [{"name": "a", "loss": "dpo", "init_from": "b"}, {"name": "b", "loss": "dpo", "init_from": "a"}]}
    from evalharness.experiment import order

    with pytest.raises(ConfigError, match="cycle"):
        order(parse_experiment(raw))


@pytest.mark.slow
def test_run_end_to_end_then_rerun_does_nothing_new(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    exp = load_experiment(_write(tmp_path))
    plan = Runner(exp, store).plan()
    assert [(s.kind, s.name, s.todo) for s in plan if s.kind == "train"] == [
        ("train", n, True) for n in ["sft", "dpo-beta0.1", "dpo-beta0.5", "onpolicy-dpo", "rm"]]
    lines = []
    runner = Runner(exp, store, progress=False, echo=lines.append)
    runner.run()
    board = runner.leaderboard()
    assert board[0].startswith("Leaderboard: judge oracle@1 vs tiny-llama on synthetic, turn 1, T=")
    assert ", 8 new tokens, seed " in board[0]  # the board names the sampling setting it shows
    assert sum("(baseline)" in line for line in board) == 1
    for name in ("sft:2", "dpo-beta0.1:2", "dpo-beta0.5:2", "onpolicy-dpo:2"):
        assert sum(name in line for line in board) == 1, (name, board)
    assert any(line.startswith("pairs onpolicy: ") and " pairs from 6 prompts" in line for line in lines)
    # 4 policies + base: each policy vs base on 3 prompts, both orders, for each judge
    eval_lines = [line for line in lines if line.startswith("eval ")]
    assert len(eval_lines) == 5 and all("perplexity" in line for line in eval_lines)
    judge_lines = [line for line in lines if line.startswith("judge ")]
    assert len(judge_lines) == 2 and all("12 pairs, 24 judgments" in line for line in judge_lines)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone()[0] == 5
        assert con.execute("SELECT count(DISTINCT checkpoint) FROM generations WHERE sample_index = 0 AND "
                           "sampling LIKE '%\"max_new_tokens\": 8%'").fetchone()[0] == 5
        n_judgments = con.execute("SELECT count(*) FROM judgments").fetchone()[0]
        row = con.execute("SELECT name, status, runs, config FROM experiments").fetchone()
        # the on-policy samples' scores went to the scores cache that judging and the eval read
        pair_scores = con.execute("SELECT count(*) FROM scores WHERE judge = 'length'").fetchone()[0]
    assert n_judgments == 48 and 0 < pair_scores <= 6 * 3
    assert row[0] == "tiny" and row[1] == "finished"
    assert set(json.loads(row[2])) == {"sft", "dpo-beta0.1", "dpo-beta0.5", "onpolicy-dpo", "rm"}
    assert json.loads(row[3])["runs"]["dpo-beta0.5"]["params"] == {"beta": 0.5}
    # the on-policy run trained on the pairs file the experiment wrote
    pairs = (tmp_path / "experiments" / "tiny" / "onpolicy.jsonl").read_text().splitlines()
    first = json.loads(pairs[0])
    assert first["score_chosen"] > first["score_rejected"]

    again = []
    Runner(exp, store, progress=False, echo=again.append).run()
    assert all("already trained" in line for line in again if line.startswith("train "))
    assert "pairs onpolicy: already built (onpolicy.jsonl)" in again
    assert all("0 judged now" in line for line in again if line.startswith("judge "))
    assert all("(0 new, " in line for line in again if line.startswith("generate "))
    assert all(line.endswith("(all from the store)") for line in again if line.startswith("eval "))
    assert all(not s.todo for s in Runner(exp, store).plan() if s.kind in ("train", "pairs"))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('name = "tiny"', 'name = "../../x"'), r"the experiment's name '../../x': use 1-100 letters"),
    (lambda t: t.replace('name = "onpolicy"', 'name = "../up"'), r"\[\[pairs\]\] name '../up': use 1-100 letters"),
])
def test_names_that_become_paths_beside_the_store_follow_the_run_name_rule(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(_write(tmp_path, edit(TINY)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


def test_a_file_stem_that_is_no_run_name_needs_a_name(tmp_path):
    path = tmp_path / "my sweep.toml"
    path.write_text(TINY.replace('name = "tiny"\n', ""))
    with pytest.raises(ConfigError, match="the experiment's name 'my sweep'.*set name ="):
        load_experiment(path)


def test_a_reward_model_run_is_judged_only_with_the_weights_it_saved(tmp_path):
    from evalharness.hashing import content_hash
    from evalharness.models import model_fingerprint
    from evalharness.tiny import build_tiny

    store = Store(str(tmp_path / "s.duckdb"))
    final = build_tiny("llama", tmp_path / "runs" / "rm" / "checkpoint-000002", num_labels=1)
    store.upsert_run({"run_id": "r" * 32, "name": "rm", "loss": "bradley-terry", "status": "finished"})
    store.add_checkpoint(content_hash(["checkpoint", "r" * 32, 2]), "r" * 32, 2, str(final), True,
                         model_fingerprint(final))
    runner = Runner(load_experiment(_write(tmp_path)), store)
    runner.run_ids["rm"] = "r" * 32
    assert runner.bound_judge("reward-model:path=@rm,batch_size=2") == f"reward-model:path={final},batch_size=2"
    other = build_tiny("llama", tmp_path / "other", seed=1, num_labels=1)
    (final / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="@rm: .* holds other weights than the run saved"):
        runner.bound_judge("reward-model:path=@rm")


def test_run_set_reads_keys_as_train_does(tmp_path):
    """A bare key is a [defaults] setting read by the training grammar; values are TOML or text for their type."""
    exp = load_experiment(_write(tmp_path), {"lr": parse_value(".5"), "data.limit": parse_value("8"),
                                             "runs.onpolicy-dpo.beta": parse_value(".1"),
                                             "generate.temperature": parse_value(".5")})
    assert {r.config.lr for r in exp.runs} == {0.5} and {r.config.data.limit for r in exp.runs} == {8}
    assert exp.entry("onpolicy-dpo").config.params == {"beta": ".1"} and exp.generate.temperature == 0.5
    runner = Runner(exp, Store(str(tmp_path / "s.duckdb")))
    spelled = load_experiment(_write(tmp_path), {"runs.onpolicy-dpo.params.beta": 0.1, "lr": 0.5, "data.limit": 8,
                                                 "generate.temperature": 0.5})
    assert runner.final_run_id(exp.entry("onpolicy-dpo")) == Runner(spelled, runner.store).final_run_id(
        spelled.entry("onpolicy-dpo"))
