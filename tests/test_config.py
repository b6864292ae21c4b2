"""One value grammar and one ``--set`` grammar: TOML values, bare text read by the field's declared type."""

import doctest

import pytest

import evalharness.config as config
from evalharness.config import ConfigError, Text, coerce, parse_value
from evalharness.training import build_train_config


def test_the_doctests_of_the_grammar_pass():
    assert doctest.testmod(config).failed == 0


@pytest.mark.parametrize("text, hint, value", [
    ("0.1", float, 0.1), (".1", float, 0.1), ("1e-1", float, 0.1), ('"0.1"', float, 0.1), ("1", float, 1.0),
    ("3", int, 3), ("yes", bool, True), ("0", bool, False), ("none", float | None, None),
    ("gpt-4o", str, "gpt-4o"), ('"x y"', str, "x y"), ("4", str, "4"), ("2024-01-01", str, "2024-01-01"),
    ("all", int | str | None, "all"), ("8", int | str | None, 8), ('["a", "b"]', str | list[str], ["a", "b"]),
])
def test_text_is_read_by_toml_then_by_the_declared_type(text, hint, value):
    got = coerce(text, hint, text=True)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("value, hint", [("0.1", float), (0, str), (True, int), (1.5, int), ([1], str)])
def test_a_value_from_a_file_is_checked_not_read(value, hint):
    with pytest.raises(ValueError):
        coerce(value, hint)


def test_train_set_reaches_fields_data_and_loss_parameters():
    from trainers.loop import bound_config

    cfg = build_train_config(None, {}, None, None, None, ["max_steps=3", "lr=.5", "data.limit=4", "loss=ipo",
                                                          "beta=1e-1", 'name="x"'])
    assert (cfg.max_steps, cfg.lr, cfg.data.limit, cfg.loss, cfg.name) == (3, 0.5, 4, "ipo", "x")
    assert bound_config(cfg)["params"] == {"beta": 0.1, "reduction": "sum"}


@pytest.mark.parametrize("sets, flags, message", [
    (["max_steps=3.5"], {}, "max_steps must be int, got 3.5"),
    (["lr=fast"], {}, "lr must be float, got 'fast'"),
    (["data=x"], {}, r"\[data\] is a table; set data.KEY=VALUE"),
    (["max_steps=2"], {"max_steps": 3}, "max_steps is also given as a flag"),
])
def test_bad_train_sets_are_one_line_errors(sets, flags, message):
    with pytest.raises(ConfigError, match=message):
        build_train_config(None, flags, None, None, None, sets)


def test_judge_spec_arguments_use_the_same_grammar():
    from evalharness.experiment import check_judge_spec

    check_judge_spec("llm:model=gpt-4o,timeout=.5,seed=none,concurrency=2", "spec")
    with pytest.raises(ConfigError, match="timeout='soon' is not a float"):
        check_judge_spec("llm:timeout=soon", "spec")


def test_parse_value_keeps_text_that_is_not_one_toml_value():
    assert isinstance(parse_value("1\nw = 2"), Text) and parse_value("1\nw = 2") == "1\nw = 2"
    assert parse_value(" [1, 2] ") == [1, 2]
