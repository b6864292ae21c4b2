"""An experiment's [generate] temperature: a number (0: greedy) or a per-category rule such as "fastchat", as
`generate --temperature` takes it; the plan and the board state it, and any other word is one line."""

import dataclasses
import json

import pytest

from evalharness.config import ConfigError, parse_value
from evalharness.experiment import Runner, load_experiment
from evalharness.generation.base import Sampling
from evalharness.store import Store
from tests.leaderboards.lbstore import make_store

EXPERIMENT = """
name = "fc"
[defaults]
model = "tiny-llama"
max_steps = 1
[[runs]]
name = "dpo"
loss = "dpo"
[generate]
temperature = {temperature}
max_new_tokens = 8
[judge]
judges = ["oracle"]
"""


def _load(tmp_path, temperature: str, overrides=None):
    path = tmp_path / "fc.toml"
    path.write_text(EXPERIMENT.format(temperature=temperature))
    return load_experiment(path, overrides)


def test_fastchat_is_the_generate_command_s_rule_and_the_plan_states_it(tmp_path):
    exp = _load(tmp_path, '"fastchat"')
    runner = Runner(exp, Store(str(tmp_path / "s.duckdb")))
    assert runner.sampling() == Sampling("fastchat", 1.0, 8, 0)
    assert runner.sampling().for_category("math").greedy  # FastChat decodes its math questions greedily
    [generate] = [s for s in runner.plan() if s.kind == "generate"]
    assert "T=fastchat" in generate.detail


def test_set_reads_a_number_or_a_rule(tmp_path):
    assert _load(tmp_path, "0.8", {"generate.temperature": parse_value(".5")}).generate.temperature == 0.5
    assert _load(tmp_path, "0.8", {"generate.temperature": parse_value("fastchat")}).generate.temperature == "fastchat"
    assert _load(tmp_path, "0", None).generate.temperature == 0.0


@pytest.mark.parametrize("word", ['"hot"', '"FastChat "', '""'])
def test_another_word_is_one_line_naming_the_rules(tmp_path, word):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, word)
    message = str(e.value)
    assert "[generate]: temperature must be a number or a rule (fastchat), got " in message and "\n" not in message


def test_the_board_states_the_rule(tmp_path):
    setting = json.dumps(dataclasses.asdict(Sampling("fastchat", 1.0, 8, 0)))  # as `generate` stores it
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")], judge="oracle",
                       sampling={"m1": setting, "base": setting}, prompt_set="synthetic")
    runner = Runner(_load(tmp_path, '"fastchat"'), store)
    runner.baseline_keys["base"] = "base"
    board = runner.leaderboard()
    assert board[0].startswith("Leaderboard: judge oracle@1 vs base on synthetic") and "T=fastchat" in board[0], board


def test_the_judge_step_pairs_the_experiment_s_own_setting_not_an_on_policy_step_s(tmp_path, monkeypatch):
    """An on-policy [[pairs]] step samples the same models at its own temperature (1.0 by default): the judge step
    states the experiment's setting, so it never pairs those samples with the others' [generate] ones."""
    from types import SimpleNamespace

    from evalharness import generate, judging

    seen = []
    monkeypatch.setattr(generate, "resolve_target", lambda spec, store, ref: SimpleNamespace(key=spec))
    monkeypatch.setattr(judging, "judge", lambda cfg, store, progress: seen.append(cfg) or SimpleNamespace(
        judge="oracle", line=lambda: "judged"))
    runner = Runner(_load(tmp_path, "0.8"), Store(str(tmp_path / "s.duckdb")), echo=lambda line: None)
    runner._judge({"dpo": "run-dpo", "base": "tiny-llama"})
    [cfg] = seen
    assert (cfg.models, cfg.baseline) == (["run-dpo"], "tiny-llama")
    assert cfg.generate == {"sampling": Sampling(0.8, 1.0, 8, 0)}
