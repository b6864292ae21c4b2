"""`judges report` reads one evaluation, chosen as the leaderboard chooses its own: one prompt set, turn and sampling
setting. Several in the store: exit 2, listed, with the flag; the titles and JSON meta name the one used."""

import dataclasses
import json

from lbstore import make_store

from evalharness.generation.base import Sampling
from tests.reliability.helpers import invoke


def _setting(t: float) -> str:
    return json.dumps(dataclasses.asdict(Sampling(temperature=t)))  # as `generate` stores it


def _two_temperatures(tmp_path):
    """Judge j: at T=0.8 m1 wins both orders of p1 and p2; at T=1.0 it loses both orders of p1, p2 and p3."""
    store = make_store(tmp_path / "s.duckdb", [(p, "m1", "base", "first", "second") for p in ("p1", "p2")],
                       sampling={"m1": _setting(0.8), "base": _setting(0.8)})
    make_store(None, [(p, "m1", "base", "second", "first") for p in ("p1", "p2", "p3")], store=store,
               sampling={"m1": _setting(1.0), "base": _setting(1.0)})
    return store


def test_two_settings_are_listed_with_the_flag_and_nothing_is_pooled(tmp_path):
    _two_temperatures(tmp_path)
    result = invoke(["judges", "report", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the judges' pairs on 'set' were sampled at 2 settings: T=0.8, ")
    assert "T=1, " in line and "(3 pairs)" in line and line.endswith("choose one with --temperature")


def test_the_chosen_setting_alone_is_counted_and_named(tmp_path):
    _two_temperatures(tmp_path)
    result = invoke(["judges", "report", "--temperature", "1", "--format", "json", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    [table] = json.loads(result.stdout)["tables"]
    assert table["meta"]["temperature"] == 1.0 and table["meta"]["prompt_set"] == "set"
    [row] = table["rows"]
    assert (row["orders"], row["p_first"]) == (6, 0.5)
    shown = invoke(["judges", "report", "--temperature", "0.8", "--store", "s.duckdb"], tmp_path)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].startswith("Judges on set, turn 1, T=0.8, top_p 1, 256 new tokens, seed 0")


def test_two_prompt_sets_name_the_prompts_flag(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")])
    make_store(None, [("q1", "m1", "base", "first", "second")], store=store, prompt_set="other")
    result = invoke(["judges", "report", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: the report has pairs on 2 prompt sets: other (1 pairs), set (1 pairs); "
                                     "choose one with --prompts")
    assert invoke(["judges", "report", "--prompts", "other", "--store", "s.duckdb"], tmp_path).exit_code == 0
