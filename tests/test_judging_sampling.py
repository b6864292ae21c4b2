"""The judging runner pairs one sampling setting for every model: the stated one, the asked temperature, or the only
one they all hold; none or several is a one-line error that lists them."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from evalharness import evalkey
from evalharness.cli import app
from evalharness.config import ConfigError
from evalharness.generation.base import Sampling
from evalharness.hashing import content_hash
from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store
from evalharness.store_rows import GenerationRecord, PromptRecord
from tests.judges.longer import longer_judge  # noqa: F401

PROMPTS = ["p1", "p2", "p3", "p4"]


def _setting(t: float) -> str:
    return json.dumps(dataclasses.asdict(Sampling(temperature=t)))


def seed(path, held: dict[str, list[float]]) -> Store:
    """Per model label, one sample per prompt at each of its temperatures, stored in that order."""
    store = Store(str(path))
    store.insert_prompts([PromptRecord(p, "set", p, json.dumps([{"role": "user", "content": f"q {p}"}]), None, "{}")
                          for p in PROMPTS])
    for label, temps in held.items():
        for t in temps:
            store.insert_generations([
                GenerationRecord(content_hash([label, p, t]), f"ck-{label}", label, None, p, 1, 0, _setting(t), t,
                                 "hf", None, None, f"{label} at {t} " + "x" * i, None, i, "stop", False, None, None)
                for i, p in enumerate(PROMPTS)])
    return store


def _judged_temperatures(store: Store) -> set[float]:
    with store.connect() as con:
        return {t for (t,) in con.execute(
            "SELECT DISTINCT g.temperature FROM judgments j JOIN generations g ON g.generation_id IN "
            "(j.generation_first, j.generation_second)").fetchall()}


def test_the_setting_every_model_holds_is_paired_not_each_ones_latest(tmp_path):
    # a also holds T=1.0 samples, stored last; b has none: the old rule took a's latest setting against b's T=0.8
    store = seed(tmp_path / "s.duckdb", {"a": [0.8, 1.0], "b": [0.8]})
    report = judge(JudgeConfig("longer", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert (report.pairs, report.judgments) == (4, 8)
    assert _judged_temperatures(store) == {0.8}


def test_several_shared_settings_are_an_error_until_one_is_asked(tmp_path):
    store = seed(tmp_path / "s.duckdb", {"a": [0.8, 1.0], "b": [0.8, 1.0]})
    with pytest.raises(ConfigError) as e:
        judge(JudgeConfig("longer", ["a"], baseline="b", prompts="set"), store, progress=False)
    ids = [evalkey.sampling_id(evalkey.canonical(_setting(t))) for t in (0.8, 1.0)]
    assert str(e.value) == (f"the models hold samples on 'set' at 2 settings: T=0.8, top_p 1, 256 new tokens, seed 0 "
                            f"[{ids[0]}]; T=1, top_p 1, 256 new tokens, seed 0 [{ids[1]}]; choose one with "
                            "--temperature")
    result = CliRunner().invoke(app, [
        "judge", "--judge", "longer", "--models", "a", "--baseline", "b", "--prompts", "set", "--temperature", "1",
        "--no-progress", "--store", store.path], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _judged_temperatures(store) == {1.0}
    # the board printed after judging is the board of that setting (T=0.8 pairs may follow in the same store)
    assert "Leaderboard: judge longer@1 vs b on set, turn 1, T=1, top_p 1, 256 new tokens, seed 0" in result.stdout


def test_models_sampled_at_different_settings_are_not_paired(tmp_path):
    # an on-policy pairs step left the SFT baseline with T=1.0 samples only; the others hold T=0.8
    store = seed(tmp_path / "s.duckdb", {"dpo": [0.8], "sft": [1.0]})
    with pytest.raises(ConfigError, match=r"no sampling setting is shared by every model on 'set': dpo has T=0.8, "
                                          r".*; sft has T=1, .*; sample them at one setting"):
        judge(JudgeConfig("longer", ["dpo"], baseline="sft", prompts="set"), store, progress=False)
    stated = {"sampling": Sampling(temperature=0.8)}  # what the experiment runner samples with
    with pytest.raises(ConfigError, match=r"not every model has samples on 'set' at T=0.8, top_p 1, 256 new tokens, "
                                          r"seed 0: dpo has T=0.8, .*; sft has T=1, "):
        judge(JudgeConfig("longer", ["dpo"], baseline="sft", prompts="set", generate=stated), store, progress=False)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM judgments").fetchone() == (0,)


def test_a_model_without_samples_at_the_stated_setting_is_sampled_at_it(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))

    def cfg(t):
        return JudgeConfig("longer", ["tiny-llama"], baseline="tiny-gpt2", prompts="synthetic", limit=2, generate={
            "backend": "hf", "sampling": Sampling(temperature=t, max_new_tokens=4, seed=1)})

    judge(cfg(1.0), store, progress=False)
    report = judge(cfg(0.5), store, progress=False)  # both hold T=1.0 samples: sampled again, at 0.5
    assert sum(n.startswith("sampled ") for n in report.notes) == 2
    assert report.judgments == 4 and evalkey.temperature(report.sampling) == 0.5
    with store.connect() as con:  # each run paired one setting: no judgment meets a T=1.0 and a T=0.5 sample
        assert con.execute("SELECT ga.temperature, gb.temperature, count(*) FROM judgments j "
                           "JOIN generations ga ON ga.generation_id = j.generation_first "
                           "JOIN generations gb ON gb.generation_id = j.generation_second GROUP BY ALL ORDER BY 1"
                           ).fetchall() == [(0.5, 0.5, 4), (1.0, 1.0, 4)]
