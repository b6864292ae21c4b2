"""Bad input, fuzzed: each damaged row is named by file, row and field; the commands stop with one line and exit 2
before writing anything; judge answers never turn into guessed verdicts; configs and arguments never crash.

tests/data/test_data_fuzz.py already shows that random bytes and records load or raise DataError. Here the damage is
placed: a valid file with one bad row at a random position must name exactly that row and field.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalharness.data.loaders import DatasetSpec, load
from evalharness.data.types import DataError
from judges.parsers import PARSERS
from tests.reliability.helpers import files_under, invoke

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
K = 3


def pair_row(i: int) -> dict:
    return {"prompt": f"Review item {i}.", "chosen": f"A fine item, number {i}.", "rejected": f"Awful item {i}."}


def scored_row(i: int, k: int = K) -> dict:
    return {"prompt": f"Review item {i}.", "completions": [f"answer {i}.{j}" for j in range(k)],
            "rewards": [0.25 * j - i for j in range(k)]}


def _line(row: dict) -> bytes:
    return json.dumps(row).encode()


# Each damage: (preset, row index -> (the damaged line, the field the error must name or None, words it must hold)).
def _set(field: str, value):
    def damage(i: int, preset: str):
        row = pair_row(i) if preset == "jsonl" else scored_row(i)
        row[field] = value
        return _line(row)

    return damage


def _drop(field: str):
    def damage(i: int, preset: str):
        row = pair_row(i) if preset == "jsonl" else scored_row(i)
        del row[field]
        return _line(row)

    return damage


def _reward(text: str):
    def damage(i: int, preset: str):
        row = scored_row(i)
        return _line(row).replace(json.dumps(row["rewards"]).encode(), f"[0.5, {text}, 1.0]".encode())

    return damage


DAMAGES = {
    "malformed JSON": (("jsonl", "scored-samples"), lambda i, p: b'{"prompt": "cut off", "chosen": ', None,
                       "malformed JSON"),
    "not an object": (("jsonl", "scored-samples"), lambda i, p: b"[1, 2, 3]", None, "expected a JSON object"),
    "not UTF-8": (("jsonl", "scored-samples"), lambda i, p: _line(pair_row(i) if p == "jsonl" else scored_row(i))
                  .replace(b"item", b"it\xffem", 1), None, "not valid UTF-8"),
    "missing chosen": (("jsonl",), _drop("chosen"), "chosen", "missing column"),
    "missing rejected": (("jsonl",), _drop("rejected"), "rejected", "missing column"),
    "empty chosen": (("jsonl",), _set("chosen", ""), "chosen", "empty"),
    "blank rejected": (("jsonl",), _set("rejected", " \n\t"), "rejected", "empty"),
    "number as text": (("jsonl",), _set("chosen", 42), "chosen", "expected a string"),
    "null text": (("jsonl",), _set("rejected", None), "rejected", "expected a string"),
    "lone surrogate": (("jsonl",), lambda i, p: _line(pair_row(i)).replace(b"Awful", b"\\ud800Awful"), "rejected",
                       "surrogate"),
    "missing rewards": (("scored-samples",), _drop("rewards"), "rewards", "missing column"),
    "NaN reward": (("scored-samples",), _reward("NaN"), "rewards[1]", "finite"),
    "infinite reward": (("scored-samples",), _reward("Infinity"), "rewards[1]", "finite"),
    "text reward": (("scored-samples",), _reward('"0.7"'), "rewards[1]", "expected a number"),
    "K mismatch": (("scored-samples",), lambda i, p: _line(scored_row(i, K + 1)), "completions", "K must be"),
    "rewards for another K": (("scored-samples",), _set("rewards", [1.0, 2.0]), "rewards", "2 rewards for 3"),
}
PLACED = [(name, preset) for name, (presets, *_) in DAMAGES.items() for preset in presets]


@FUZZ
@given(st.sampled_from(PLACED), st.integers(1, 6), st.data())
def test_one_damaged_row_anywhere_is_named_by_file_row_and_field(case, n_rows, data):
    name, preset = case
    _, damage, field, words = DAMAGES[name]
    # K mismatch needs an earlier row that fixed K
    at = data.draw(st.integers(1 if name == "K mismatch" and n_rows > 1 else 0, n_rows - 1)) if n_rows > 1 else 0
    if name == "K mismatch" and at == 0:
        return
    make = pair_row if preset == "jsonl" else scored_row
    lines = [damage(i, preset) if i == at else _line(make(i)) for i in range(n_rows)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        with pytest.raises(DataError) as e:
            load(DatasetSpec(preset, path=str(path)))
    message = str(e.value)
    where = f"{path}:{at + 1}" + (f" field {field!r}" if field else "")
    assert message.startswith(where + ": "), (message, where)
    assert words in message and "\n" not in message


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in pair_row(0)),
                       st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)),
                       min_size=1, max_size=4))
def test_extra_fields_change_nothing(extra):
    with tempfile.TemporaryDirectory() as d:
        plain, padded = Path(d) / "a.jsonl", Path(d) / "b.jsonl"
        plain.write_text("".join(json.dumps(pair_row(i)) + "\n" for i in range(3)))
        padded.write_text("".join(json.dumps({**extra, **pair_row(i)}) + "\n" for i in range(3)))
        a, b = load(DatasetSpec("jsonl", path=str(plain))), load(DatasetSpec("jsonl", path=str(padded)))
    assert [x.id for x in a.examples] == [x.id for x in b.examples]


def test_a_huge_text_loads_whole_and_training_truncates_it_by_the_stated_rule(tmp_path):
    huge = "very " * 20_000  # 100,000 characters: 100,000 tokens of the tiny byte-level tokenizer
    rows = [pair_row(i) for i in range(4)]
    rows[1]["chosen"] = huge
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    [pair] = [p for p in load(DatasetSpec("jsonl", path=str(data))).examples if len(p.y_pos) > 1000]
    assert pair.y_pos == huge
    result = invoke(["train", "--loss", "dpo", "--data", "jsonl", "--path", str(data), "--max-steps", "1",
                     "--batch-size", "2", "--max-length", "64", "--max-prompt-length", "32", "--no-progress",
                     "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    # only the pair with the huge response passes 64 tokens; it is cut from the right, counted and reported
    assert "4 training examples" in result.stdout
    assert "truncated 1 examples (prompt from the left, response from the right)" in result.stdout, result.stdout


@pytest.mark.parametrize("name", ["malformed JSON", "not UTF-8", "empty chosen", "lone surrogate"])
def test_train_on_a_damaged_file_is_one_line_exit_2_and_writes_nothing(tmp_path, name):
    _, damage, field, words = DAMAGES[name]
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(b"\n".join(damage(i, "jsonl") if i == 2 else _line(pair_row(i)) for i in range(4)) + b"\n")
    result = invoke(["train", "--loss", "dpo", "--data", "jsonl", "--path", "pairs.jsonl", "--max-steps", "1",
                     "--no-progress", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 2
    err = result.stderr.strip()
    where = "pairs.jsonl:3" + (f" field {field!r}" if field else "")
    assert err.startswith("error: pairs.jsonl:3") and where in err and words in err and "\n" not in err, err
    assert files_under(tmp_path) == ["pairs.jsonl"]  # no store, no run directory


def test_generate_on_a_damaged_prompt_file_is_one_line_exit_2_and_writes_nothing(tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Name a colour."}\n{"prompt": 7}\n')
    result = invoke(["generate", "-c", "tiny-llama", "--prompts", "jsonl", "--path", "prompts.jsonl", "--no-progress",
                     "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert err.startswith("error: prompts.jsonl:2 field 'prompt': ") and "\n" not in err, err
    assert files_under(tmp_path) == ["prompts.jsonl"]


@pytest.mark.parametrize("args, message", [
    (["train", "--loss", "dpo", "--limit", "-1", "--max-steps", "1"], "limit must be a positive integer"),
    (["generate", "-c", "tiny-llama", "--limit", "-1"], "limit must be an integer >= 1"),
    (["generate", "-c", "tiny-llama", "--temperature", "-0.5"], "temperature must be > 0"),
    # the synthetic task is generated in memory: a limit of 1e20 would grow the process until the machine gave out
    (["eval", "-c", "tiny-llama", "--limit", "99999999999999999999"], "limit (the number of examples generated) "
                                                                       "must be an integer in [1, 1000000]"),
    (["generate", "-c", "tiny-llama", "--limit", "99999999999999999999"], "limit (the number of prompts generated)"),
    (["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--samples", "0"], "must be at least 1"),
])
def test_out_of_range_flags_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    result = invoke(args + ["--no-progress", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert files_under(tmp_path) == []


# -------------------------------------------------------------------------------------------------- judge answers

answers = st.one_of(st.text(max_size=300), st.lists(st.sampled_from(
    ["[[A]]", "[[B]]", "[[C]]", "[[", "]]", "Preferred: A", "Preferred: B", "More helpful: A", "Response 1",
     "Response 2", "model_1", "m", "M", "\n", " ", "A", "B", "tie", "\x00", "\ufffd", "é"]), max_size=12).map("".join))


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(sorted(PARSERS)), answers)
def test_every_parser_reads_any_answer_as_a_pairwise_verdict_or_unparsed(name, text):
    assert PARSERS[name](text) in ("first", "second", "tie", "unparsed")


no_brackets = st.text(st.characters(blacklist_characters="[]"), max_size=80)


@settings(max_examples=200, deadline=None, database=None)
@given(no_brackets, no_brackets, st.sampled_from("ABC"), st.sampled_from("ABC"))
def test_mt_bench_verdicts_are_read_exactly_and_never_guessed(before, after, x, y):
    assert PARSERS["mt-bench"](before + after) == "unparsed"  # no verdict: nothing is made up
    want = {"A": "first", "B": "second", "C": "tie"}
    assert PARSERS["mt-bench"](f"{before}[[{x}]]{after}") == want[x]
    two = PARSERS["mt-bench"](f"{before}[[{x}]]{after}[[{y}]]")
    assert two == (want[x] if x == y else "unparsed")  # two different verdicts are a contradiction, not a choice


@settings(max_examples=200, deadline=None, database=None)
@given(st.sampled_from([("preferred", "Preferred"), ("more-helpful", "More helpful")]),
       st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), max_size=60),  # no label line
       st.sampled_from("AB"), st.sampled_from("AB"))
def test_labelled_verdicts_are_read_exactly_and_never_guessed(fmt, prose, x, y):
    name, label = fmt
    parse = PARSERS[name]
    assert parse(prose) == "unparsed"  # a line without "<label>:" carries no verdict
    want = {"A": "first", "B": "second"}
    assert parse(f"{prose}\n{label}: {x}") == want[x]
    assert parse(f"{prose}\n{label}: {x}\n{label}: {y}") == (want[x] if x == y else "unparsed")


# --------------------------------------------------------------------------------------------- configs and flags

TRAIN_KEYS = ["loss", "model", "name", "reference", "max_steps", "batch_size", "lr", "optimizer", "scheduler",
              "dtype", "max_length", "max_prompt_length", "save_every", "warmup_steps", "logit_temperature",
              "prompt_style", "bogus"]
DATA_KEYS = ["name", "path", "limit", "eval_fraction", "columns", "split"]
values = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.text(max_size=8), st.sampled_from(["dpo", "sft->dpo", "0.5*dpo + sft", "dpo->", "synthetic",
                                                         "tiny-llama", "adamw", "cosine", "bfloat16", "jsonl", "*"]),
                   st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.sampled_from(["prompt", "x"]),
                                                                            st.text(max_size=3), max_size=2))


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items()) + "}"


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(TRAIN_KEYS), values, max_size=4),
       st.dictionaries(st.sampled_from(DATA_KEYS), values, max_size=3))
def test_validate_any_config_file_is_ok_or_one_line_exit_2(top, data):
    text = "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in top.items())
    text += "[data]\n" + "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in data.items())
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c.toml").write_text(text)
        result = invoke(["validate", "c.toml"], Path(d))
        assert files_under(Path(d)) == ["c.toml"]
    assert result.exit_code in (0, 2), text
    if result.exit_code == 2:
        err = result.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err, (text, err)


flag_values = st.one_of(st.integers(-5, 5).map(str), st.sampled_from(["", "0", "-1", "1e309", "nan", "inf", "x",
                                                                       "oracle:", "oracle:k", "llm:model=", "a,b",
                                                                       ":", "=", ",", "@", "\x00"]))
GENERATE_FLAGS = ["--n", "--temperature", "--top-p", "--max-new-tokens", "--batch-size", "--limit", "--prompts",
                  "--backend", "--max-prompt-length"]
JUDGE_FLAGS = ["--judge", "--models", "--baseline", "--samples", "--prompts", "--limit", "--concurrency"]


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([("generate", GENERATE_FLAGS), ("judge", JUDGE_FLAGS)]), st.data())
def test_bad_flags_are_refused_before_anything_is_written(command, data):
    """Flag values drawn from a bad set: each run must stop with exit 2 (a typer usage error or our one line)."""
    name, flags = command
    chosen = data.draw(st.dictionaries(st.sampled_from(flags), flag_values, min_size=1, max_size=3))
    args = [name] + [x for k, v in chosen.items() for x in (k, v)]
    if name == "generate":
        args += ["-c", "no-such-model"]
    else:
        args += [] if "--judge" in chosen else ["--judge", "oracle"]
        args += [] if "--models" in chosen else ["--models", "nobody"]
    with tempfile.TemporaryDirectory() as d:
        result = invoke(args + ["--no-progress", "--store", "s.duckdb"], Path(d))
        written = files_under(Path(d))
    assert result.exit_code == 2, (args, result.output)
    err = result.stderr.strip()
    if err.startswith("error: "):
        assert "\n" not in err, (args, err)
    else:  # typer's own usage message for a value of the wrong type
        assert "Usage:" in err, (args, err)
    assert written in ([], ["s.duckdb"]), (args, written)  # at most an empty, migrated store
