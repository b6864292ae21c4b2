"""Judge presets are data (judges/presets/*.toml): each builds the judge it names, listed with its file's summary."""

import inspect

import pytest
import tomllib
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.config import ConfigError
from evalharness.experiment import check_judge_spec
from evalharness.plugins import registry
from evalharness.registry import Registry
from judges.base import JudgeError, build_judge
from judges.presets import PRESET_DIR, Preset, register_presets
from judges.templates import load_template

DUMMY_URL = "http://127.0.0.1:9/v1"  # never contacted: building a judge sends nothing
FILES = sorted(PRESET_DIR.glob("*.toml"))


def test_the_package_ships_presets():
    assert {p.stem for p in FILES} >= {"gpt-4", "gpt-4o"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_preset_file_builds_its_judge_with_its_values(path):
    data = tomllib.loads(path.read_text())
    args = {k: v for k, v in data.items() if k not in ("judge", "summary")}
    entry = registry("judges").entry(path.stem)
    assert entry.source == "builtin" and entry.summary == data["summary"] and entry.summary
    judge = build_judge(path.stem, base_url=DUMMY_URL)
    plain = build_judge(data["judge"], **{**args, "base_url": DUMMY_URL})
    assert (judge.id, judge.version, judge.template) == (plain.id, plain.version, plain.template)
    for key, value in args.items():
        assert getattr(judge, key) == (load_template(value).key if key == "template" else value), key


def test_a_preset_runs_the_model_it_is_named_for_and_spec_arguments_win(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # read, never sent: nothing is judged here
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert build_judge("gpt-4", base_url=DUMMY_URL).id == "llm:gpt-4@127.0.0.1"
    assert build_judge("gpt-4").id == "llm:gpt-4"
    assert build_judge("gpt-4o").id == "llm:gpt-4o"
    judge = build_judge("gpt-4:model=my-judge,concurrency=2,temperature=0.5")
    assert (judge.id, judge.concurrency, judge.temperature) == ("llm:my-judge", 2, 0.5)
    assert judge.template == load_template("mt-bench").key  # the file's value where the spec gives none


def test_ls_judges_lists_the_presets_with_their_summaries():
    out = CliRunner().invoke(app, ["ls", "judges"]).stdout
    for path in FILES:
        summary = tomllib.loads(path.read_text())["summary"]
        assert any(line.split(None, 1) == [path.stem, summary] for line in out.splitlines()), path.stem


def _preset(tmp_path, text, name="house"):
    (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path / f"{name}.toml"


def test_an_unknown_key_is_an_error_naming_the_file(tmp_path):
    path = _preset(tmp_path, 'summary = "typo"\njudge = "llm"\nmodell = "gpt-4"\n')
    preset = Preset.read(path)
    for attempt in (preset, lambda: inspect.signature(preset), lambda: preset.check_spec({})):
        with pytest.raises(JudgeError, match=rf"{path}.*unknown key 'modell'.*did you mean 'model'"):
            attempt()
    with pytest.raises(JudgeError, match=rf"{path}.*unknown judge 'lmm'"):
        Preset.read(_preset(tmp_path, 'judge = "lmm"\n'))()


def test_dry_run_checks_a_preset_spec_as_its_judge_does():
    check_judge_spec("gpt-4:concurrency=3", "judges")
    with pytest.raises(ConfigError, match="concurrency must be an integer >= 1"):
        check_judge_spec("gpt-4:concurrency=0", "judges")


def test_a_file_that_cant_be_read_costs_only_itself(tmp_path):
    _preset(tmp_path, 'summary = "fine"\njudge = "llm"\nmodel = "m"\n', "good")
    bad = _preset(tmp_path, 'summary = "no judge"\nmodel = "m"\n', "bad")
    broken = _preset(tmp_path, 'judge = "llm\n', "broken")
    reg = Registry("judges")
    with pytest.raises(JudgeError) as e:
        register_presets(reg, tmp_path)
    assert str(bad) in str(e.value) and "'judge' must name" in str(e.value) and str(broken) in str(e.value)
    assert reg.names() == ["good"] and reg.entry("good").summary == "fine"
