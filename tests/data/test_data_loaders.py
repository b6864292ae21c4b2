"""The generic loaders, ultrafeedback, scored samples, the spec and the registry, on files the tests write."""

import gzip
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalharness.data.loaders import DatasetSpec, Loaded, LoadReport, load, pair_id
from evalharness.data.types import DataError, Message, PreferencePair, ScoredSamples
from evalharness.plugins import registry
from evalharness.registry import RegistryError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def raises(spec, row, field, match=None):
    with pytest.raises(DataError, match=match) as e:
        load(spec)
    assert (e.value.row, e.value.field) == (row, field), str(e.value)
    assert e.value.source in str(e.value)
    return e.value


# ------------------------------------------------------------------------------------------------ generic pairs

ROWS = [
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
    {"prompt": "Add 2 and 2.", "chosen": "4", "rejected": "5", "extra": 1},
]


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json", "parquet"])
def test_the_same_pairs_from_every_file_format_with_the_same_ids(tmp_path, fmt):
    path = tmp_path / f"pairs.{fmt}"
    rows = [{k: v for k, v in r.items() if k != "extra"} for r in ROWS]
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "jsonl.gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    name = "jsonl" if fmt.startswith("jsonl") else fmt
    examples, report = load(DatasetSpec(name, path=str(path)))
    assert examples == [
        PreferencePair(
            "Name a colour.",
            "Blue.",
            "Name a colour.",
            "Seven.",
            pair_id("Name a colour.", "Blue.", "Name a colour.", "Seven."),
        ),
        PreferencePair("Add 2 and 2.", "4", "Add 2 and 2.", "5", pair_id("Add 2 and 2.", "4", "Add 2 and 2.", "5")),
    ]
    assert [e.meta["row"] for e in examples] == [1, 2]
    assert (report.rows_read, report.examples, report.skipped) == (2, 2, {})


def test_column_mapping_and_a_separate_rejected_prompt(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"q": "x+", "q_neg": "x-", "good": "y+", "bad": "y-"}])
    spec = DatasetSpec(
        "jsonl", path=path, columns={"prompt": "q", "prompt_rejected": "q_neg", "chosen": "good", "rejected": "bad"}
    )
    [pair] = load(spec).examples
    assert (pair.x_pos, pair.y_pos, pair.x_neg, pair.y_neg) == ("x+", "y+", "x-", "y-")


def test_message_list_responses_carry_their_own_context(tmp_path):
    chosen = msgs(
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye"), ("assistant", "Ciao")
    )
    rejected = msgs(("user", "Hi"), ("assistant", "Go away"))
    path = write_jsonl(tmp_path / "m.jsonl", [{"chosen": chosen, "rejected": rejected}])
    [pair] = load(DatasetSpec("jsonl", path=path)).examples
    assert pair.x_pos == (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello"),
        Message("user", "Bye"),
    )
    assert pair.y_pos == "Ciao"
    assert pair.x_neg == (Message("user", "Hi"),)
    assert pair.y_neg == "Go away"


def test_an_assistant_only_message_list_takes_the_prompt_column(tmp_path):
    row = {"prompt": msgs(("user", "Hi")), "chosen": msgs(("assistant", "Hello")), "rejected": "Go"}
    [pair] = load(DatasetSpec("jsonl", path=write_jsonl(tmp_path / "m.jsonl", [row]))).examples
    assert pair.x_pos == pair.x_neg == (Message("user", "Hi"),)
    assert (pair.y_pos, pair.y_neg) == ("Hello", "Go")


def test_missing_column_names_row_field_and_the_closest_present_column(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [ROWS[0], {"prompt": "p", "chosen": "a", "rejectd": "b"}])
    e = raises(DatasetSpec("jsonl", path=path), 2, "rejected", "did you mean 'rejectd'")
    assert "present: chosen, prompt, rejectd" in str(e)


def test_a_missing_prompt_is_an_error_only_when_a_response_has_no_context(tmp_path):
    raises(
        DatasetSpec("jsonl", path=write_jsonl(tmp_path / "a.jsonl", [{"chosen": "a", "rejected": "b"}])),
        1,
        "prompt",
        "missing column",
    )
    row = {"chosen": msgs(("user", "q"), ("assistant", "a")), "rejected": msgs(("user", "q"), ("assistant", "b"))}
    assert len(load(DatasetSpec("jsonl", path=write_jsonl(tmp_path / "b.jsonl", [row]))).examples) == 1


def test_an_unknown_role_in_the_column_mapping_is_an_error_with_a_hint(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", ROWS)
    with pytest.raises(DataError, match="unknown role 'choosen'; did you mean 'chosen'"):
        load(DatasetSpec("jsonl", path=path, columns={"choosen": "good"}))


@pytest.mark.parametrize(
    "row, field, match",
    [
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, "chosen", "expected a string or a list"),
        ({"prompt": "p", "chosen": "a", "rejected": None}, "rejected", "got null"),
        ({"prompt": 5, "chosen": "a", "rejected": "b"}, "prompt", "got a number"),
        ({"prompt": "p", "chosen": "", "rejected": "b"}, "chosen", "empty response"),
        ({"prompt": "p", "chosen": "a", "rejected": " \n\t"}, "rejected", "empty response"),
        (
            {"prompt": "p", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
            "chosen",
            "must end with an assistant",
        ),
        ({"prompt": "p", "chosen": [], "rejected": "b"}, "chosen", "got nothing"),
        (
            {"prompt": "p", "chosen": [{"role": "bot", "content": "a"}], "rejected": "b"},
            "chosen[0].role",
            "unknown role",
        ),
        ({"prompt": "p", "chosen": [{"role": "assistant"}], "rejected": "b"}, "chosen[0]", "no 'content'"),
        ({"prompt": "p", "chosen": ["a"], "rejected": "b"}, "chosen[0]", "expected a {role, content} message"),
        ({"prompt": "p", "chosen": "a\ud800", "rejected": "b"}, "chosen", "unpaired surrogate"),
    ],
)
def test_wrong_types_and_empty_responses_name_row_and_field(tmp_path, row, field, match):
    path = write_jsonl(tmp_path / "m.jsonl", [ROWS[0], row])
    raises(DatasetSpec("jsonl", path=path), 2, field, match)


def test_empty_responses_can_be_skipped_and_counted_instead(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [ROWS[0], {"prompt": "p", "chosen": "", "rejected": "b"}])
    examples, report = load(DatasetSpec("jsonl", path=path, on_empty="skip"))
    assert len(examples) == 1 and report.skipped == {"empty response": 1}


def test_malformed_json_and_non_utf8_lines_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n\n" + b'{"prompt": "p", "chosen": \n')
    raises(DatasetSpec("jsonl", path=str(path)), 3, None, "malformed JSON")
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    raises(DatasetSpec("jsonl", path=str(path)), 2, None, "not valid UTF-8 \\(byte 0xe9")
    path.write_bytes(b"[1, 2]\n")
    raises(DatasetSpec("jsonl", path=str(path)), 1, None, "expected a JSON object, got a list")


def test_non_utf8_in_a_json_array_names_its_line(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(b'[\n{"prompt": "p", "chosen": "a", "rejected": "b"},\n{"prompt": "\xff"}\n]')
    raises(DatasetSpec("json", path=str(path)), 3, None, "not valid UTF-8")


def test_a_corrupt_gzip_or_parquet_file_is_a_data_error(tmp_path):
    gz = tmp_path / "m.jsonl.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt gzip"):
        load(DatasetSpec("jsonl", path=str(gz)))
    pqf = tmp_path / "m.parquet"
    pqf.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable parquet file"):
        load(DatasetSpec("parquet", path=str(pqf)))


def test_nothing_is_returned_when_the_last_row_is_bad(tmp_path):
    rows = ROWS * 50 + [{"prompt": "p", "chosen": "a"}]
    raises(DatasetSpec("jsonl", path=write_jsonl(tmp_path / "m.jsonl", rows)), 101, "rejected")


def test_duplicates_and_identical_sides_are_skipped_and_counted(tmp_path):
    rows = [ROWS[0], ROWS[1], ROWS[0], {"prompt": "p", "chosen": "same", "rejected": "same"}]
    examples, report = load(DatasetSpec("jsonl", path=write_jsonl(tmp_path / "m.jsonl", rows)))
    assert len(examples) == 2
    assert report.skipped == {"duplicate": 1, "chosen == rejected": 1}
    assert report.summary().endswith("4 rows, 2 examples, 2 skipped (chosen == rejected: 1, duplicate: 1)")


def test_limit_keeps_the_first_examples_and_stops_reading(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(5)] + [{"broken": True}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    examples, report = load(DatasetSpec("jsonl", path=path, limit=3))
    assert [e.x_pos for e in examples] == ["p0", "p1", "p2"] and report.limited
    assert load(DatasetSpec("jsonl", path=path, limit=0)).examples == []


def test_local_file_problems(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(DatasetSpec("jsonl", path=str(tmp_path / "absent.jsonl")))
    with pytest.raises(DataError, match="unknown file type"):
        load(DatasetSpec("hh-rlhf", path=str(tmp_path / "data.csv")))
    with pytest.raises(DataError, match="reads a local file; pass path="):
        load(DatasetSpec("jsonl"))


@pytest.mark.parametrize("name, content", [("e.jsonl", ""), ("blank.jsonl", "\n \n"), ("e.json", "[]")])
def test_a_file_with_no_records_is_an_error(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match="holds no records"):
        load(DatasetSpec("json" if name.endswith(".json") else "jsonl", path=str(tmp_path / name)))


def test_a_split_given_with_a_local_file_is_noted_not_applied(tmp_path):
    _, report = load(DatasetSpec("jsonl", path=write_jsonl(tmp_path / "m.jsonl", ROWS), split="train"))
    assert report.notes == ["split 'train' not applied: a local file is one split"]
    assert "split 'train' not applied" in report.summary()


# -------------------------------------------------------------------------------------------- ultrafeedback


def test_ultrafeedback_from_a_local_parquet_in_the_hub_layout(tmp_path):
    rows = [
        {
            "prompt": "Write a haiku about rain.",
            "prompt_id": "abc",
            "chosen": msgs(("user", "Write a haiku about rain."), ("assistant", "Soft rain on tin roofs")),
            "rejected": msgs(("user", "Write a haiku about rain."), ("assistant", "Rain is wet.")),
            "messages": msgs(("user", "Write a haiku about rain."), ("assistant", "Soft rain on tin roofs")),
            "score_chosen": 8.5,
            "score_rejected": 3.0,
        }
    ]
    path = tmp_path / "train_prefs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    [pair] = load(DatasetSpec("ultrafeedback-binarized", path=str(path))).examples
    assert pair.x_pos == pair.x_neg == (Message("user", "Write a haiku about rain."),)
    assert (pair.y_pos, pair.y_neg) == ("Soft rain on tin roofs", "Rain is wet.")
    assert {k: pair.meta[k] for k in ("prompt_id", "score_chosen", "score_rejected")} == {
        "prompt_id": "abc",
        "score_chosen": 8.5,
        "score_rejected": 3.0,
    }


def test_ultrafeedback_without_a_path_asks_the_hub_for_train_prefs(monkeypatch):
    import datasets

    seen = {}

    def fake(hub_id, split):
        seen.update(hub_id=hub_id, split=split)
        return [
            {
                "prompt": "q",
                "chosen": msgs(("user", "q"), ("assistant", "a")),
                "rejected": msgs(("user", "q"), ("assistant", "b")),
            }
        ]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    examples, report = load(DatasetSpec("ultrafeedback-binarized"))
    assert seen == {"hub_id": "HuggingFaceH4/ultrafeedback_binarized", "split": "train_prefs"}
    assert report.source == "hub:HuggingFaceH4/ultrafeedback_binarized[train_prefs]" and len(examples) == 1
    load(DatasetSpec("ultrafeedback-binarized", split="test_prefs"))
    assert seen["split"] == "test_prefs"


def test_hub_failures_offline_are_one_line_without_a_traceback(tmp_path):
    import subprocess
    import sys

    code = (
        "from evalharness.data.loaders import DatasetSpec, load\n"
        "from evalharness.data.types import DataError\n"
        "try:\n    load(DatasetSpec('hh-rlhf'))\n"
        "except DataError as e:\n    print('DATAERROR', e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in out.stdout.splitlines() if line.startswith("DATAERROR")]
    assert len(lines) == 1, out.stdout + out.stderr
    assert lines[0].startswith("DATAERROR hub:Anthropic/hh-rlhf[train]: could not load from the hub")
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------------------------------- scored samples


def test_scored_samples_load(tmp_path):
    rows = [
        {"prompt": "Review the park.", "completions": ["Lovely.", "Awful.", "Fine."], "rewards": [1.0, -1, 0.25]},
        {
            "prompt": msgs(("user", "Review the zoo.")),
            "completions": ["Great.", "Dirty.", "Ok."],
            "rewards": [0.9, -0.5, 0],
        },
    ]
    examples, report = load(DatasetSpec("scored-samples", path=write_jsonl(tmp_path / "s.jsonl", rows)))
    assert all(isinstance(e, ScoredSamples) for e in examples)
    assert examples[0].completions == ("Lovely.", "Awful.", "Fine.") and examples[0].rewards == (1.0, -1.0, 0.25)
    assert examples[1].x == (Message("user", "Review the zoo."),)
    assert report.counts["K"] == 3


@pytest.mark.parametrize(
    "row, field, match",
    [
        (
            {"prompt": "p", "completions": ["a", "b"], "rewards": [1, 2]},
            "completions",
            "has 2 completions; row 1 has 3",
        ),
        ({"prompt": "p", "completions": ["a", "b", "c"], "rewards": [1, 2]}, "rewards", "has 2 rewards for 3"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "rewards": [1, math.nan, 2]}, "rewards[1]", "finite"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "rewards": [1, 2, math.inf]}, "rewards[2]", "finite"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "rewards": [1, "2", 3]}, "rewards[1]", "expected a number"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "rewards": [1, True, 3]}, "rewards[1]", "expected a number"),
        ({"prompt": "p", "completions": ["a", "", "c"], "rewards": [1, 2, 3]}, "completions[1]", "empty response"),
        ({"prompt": "p", "completions": ["a", 2, "c"], "rewards": [1, 2, 3]}, "completions[1]", "expected a string"),
        ({"prompt": "p", "completions": "abc", "rewards": [1, 2, 3]}, "completions", "expected a list"),
        ({"prompt": "p", "completions": ["a", "b", "c"]}, "rewards", "missing column"),
    ],
)
def test_scored_samples_errors_name_row_and_field(tmp_path, row, field, match):
    first = {"prompt": "p0", "completions": ["a", "b", "c"], "rewards": [0, 1, 2]}
    # json.dumps writes NaN and Infinity, which json.loads reads back: the loader must reject them itself
    raises(DatasetSpec("scored-samples", path=write_jsonl(tmp_path / "s.jsonl", [first, row])), 2, field, match)


def test_scored_samples_need_two_completions(tmp_path):
    row = {"prompt": "p", "completions": ["a"], "rewards": [1]}
    raises(DatasetSpec("scored-samples", path=write_jsonl(tmp_path / "s.jsonl", [row])), 1, "completions", "at least 2")


# -------------------------------------------------------------------------------------- spec and registry


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(name=""),
        dict(name="jsonl", limit=-1),
        dict(name="jsonl", limit=True),
        dict(name="jsonl", on_empty="ignore"),
        dict(name="jsonl", columns={"prompt": 3}),
        dict(name="jsonl", split=""),
    ],
)
def test_spec_validates_on_construction(kwargs):
    with pytest.raises(ValueError):
        DatasetSpec(**kwargs)


def test_unknown_preset_gets_a_did_you_mean_from_the_registry():
    with pytest.raises(RegistryError, match="did you mean 'hh-rlhf'"):
        load(DatasetSpec("hh-rlfh"))


def test_every_registered_dataset_resolves_to_a_loader():
    names = registry("datasets").names()
    assert {
        "hh-rlhf",
        "jsonl",
        "json",
        "parquet",
        "hub",
        "ultrafeedback-binarized",
        "scored-samples",
        "causal-dialogue",
    } <= set(names)
    for name in names:
        assert callable(registry("datasets").get(name)), name


@pytest.mark.parametrize("name, kind", [("synthetic", PreferencePair), ("synthetic-scored", ScoredSamples)])
def test_the_synthetic_presets_are_sized_by_limit(name, kind):
    examples, report = load(DatasetSpec(name, limit=7, split="train"))
    assert len(examples) == 7 and all(isinstance(e, kind) for e in examples)
    assert report.notes
    with pytest.raises(DataError, match="reads no source"):
        load(DatasetSpec(name, path="x.jsonl"))


def test_a_plugin_loader_that_returns_a_bare_list_gets_a_report(monkeypatch):
    reg = registry("datasets")
    reg.add("test-bare-list", lambda spec: [PreferencePair("x", "a", "x", "b", "id1")], replace=True)
    try:
        result = load(DatasetSpec("test-bare-list"))
    finally:
        reg._entries.pop("test-bare-list")
    assert isinstance(result, Loaded) and isinstance(result.report, LoadReport)
    assert result.report.examples == 1
