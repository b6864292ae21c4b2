"""HH-RLHF: the dialogue parser on hand-made strings, then the real harmless-base test file from ../shared/data."""

import gzip
import json
from pathlib import Path

import pytest

from evalharness.data.hh import HHFormatError, parse_turns, render_prompt, split_dialogue
from evalharness.data.loaders import DatasetSpec, load
from evalharness.data.types import DataError, Message

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HH_FILE = SHARED / "hh-rlhf" / "harmless-base-test.jsonl.gz"
needs_hh = pytest.mark.skipif(not HH_FILE.exists(), reason=f"the shared HH-RLHF file is not at {HH_FILE}")


def U(text):
    return Message("user", text)


def A(text):
    return Message("assistant", text)


def test_split_at_the_last_assistant_turn_keeps_the_history_as_messages():
    text = "\n\nHuman: one\n\nAssistant: two\n\nHuman: three\n\nAssistant: four"
    x, y = split_dialogue(text)
    assert x == (U("one"), A("two"), U("three"))
    assert y == "four"
    assert render_prompt(x) + " " + y == text


def test_only_one_separator_space_is_dropped_and_the_rest_is_content():
    x, y = split_dialogue("\n\nHuman:  two spaces\n\nAssistant:   three")
    assert x == (U(" two spaces"),)
    assert y == "  three"


def test_markers_without_the_blank_line_are_content():
    x, y = split_dialogue("\n\nHuman: say Human: hi\nAssistant: no\n\nAssistant: ok")
    assert x == (U("say Human: hi\nAssistant: no"),)
    assert y == "ok"


def test_consecutive_assistant_turns_stay_separate():
    x, _ = split_dialogue("\n\nHuman: q\n\nAssistant: a1\n\nAssistant: a2\n\nAssistant: a3")
    assert x == (U("q"), A("a1"), A("a2"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("\n\nHuman: no answer turn", "no '\\n\\nAssistant:' turn"),
        ("preamble\n\nHuman: q\n\nAssistant: a", "text before the first"),
        ("\n\nAssistant: nobody asked", "no '\\n\\nHuman:' turn"),
    ],
)
def test_malformed_dialogues(text, problem):
    with pytest.raises(HHFormatError, match=problem.replace("\\", "\\\\")):
        split_dialogue(text)


def test_parse_turns_of_an_empty_prefix_is_empty():
    assert parse_turns("") == ()


def _write_hh(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def test_prompts_that_differ_are_kept_apart_and_ids_are_content_hashes(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
        {
            "chosen": "\n\nHuman: q\n\nAssistant: a\n\nAssistant: better",
            "rejected": "\n\nHuman: q\n\nAssistant: worse",
        },
    ]
    _write_hh(tmp_path / "a.jsonl.gz", rows)
    _write_hh(tmp_path / "b.jsonl.gz", rows[::-1])
    a = load(DatasetSpec("hh-rlhf", path=str(tmp_path / "a.jsonl.gz")))
    b = load(DatasetSpec("hh-rlhf", path=str(tmp_path / "b.jsonl.gz")))
    first, second = a.examples
    assert first.x_pos == first.x_neg == (U("hi"),)
    assert (first.y_pos, first.y_neg) == ("hello", "go away")
    assert second.x_pos == (U("q"), A("a")) and second.x_neg == (U("q"),)
    assert a.report.counts["x_pos != x_neg"] == 1
    assert {p.id for p in a.examples} == {p.id for p in b.examples}  # ids follow content, not position
    assert first.meta == {"source": str(tmp_path / "a.jsonl.gz"), "row": 1}


def test_empty_responses_are_skipped_and_counted_by_default_or_raise_on_request(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: no"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: ", "rejected": "\n\nHuman: hi\n\nAssistant: something"},
    ]
    path = tmp_path / "e.jsonl.gz"
    _write_hh(path, rows)
    examples, report = load(DatasetSpec("hh-rlhf", path=str(path)))
    assert len(examples) == 1
    assert (report.rows_read, report.examples, report.skipped) == (2, 1, {"empty response": 1})
    assert report.skipped_at == [f"{path}:2 field 'chosen': empty response"]
    with pytest.raises(DataError) as e:
        load(DatasetSpec("hh-rlhf", path=str(path), on_empty="error"))
    assert (e.value.row, e.value.field) == (2, "chosen")


def test_a_row_without_an_assistant_turn_names_file_row_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"})
        + "\n"
        + json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "just text"})
        + "\n"
    )
    with pytest.raises(DataError, match="bad.jsonl:2 field 'rejected': no") as e:
        load(DatasetSpec("hh-rlhf", path=str(path)))
    assert (e.value.source, e.value.row, e.value.field) == (str(path), 2, "rejected")


def test_the_hub_is_not_tried_when_a_path_is_given_and_offline_fails_in_one_line(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Anthropic/hh-rlhf' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        load(DatasetSpec("hh-rlhf"))
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("hub:Anthropic/hh-rlhf[train]: could not load from the hub (ConnectionError:")
    assert "pass path=" in message


@pytest.fixture(scope="module")
def real_hh():
    return load(DatasetSpec("hh-rlhf", path=str(HH_FILE)))


@needs_hh
def test_real_file_loads_every_pair_but_the_four_empty_chosen_responses(real_hh):
    examples, report = real_hh
    # The public file has 2,312 rows; rows 87, 517, 926 and 1104 have a whitespace-only chosen response.
    assert report.rows_read == 2312
    assert report.skipped == {"empty response": 4}
    assert [s.split(":")[-2].split()[0] for s in report.skipped_at] == ["87", "517", "926", "1104"]
    assert len(examples) == report.examples == 2308
    assert len({p.id for p in examples}) == 2308


@needs_hh
def test_real_file_prompts_end_with_a_pending_assistant_turn_and_round_trip(real_hh):
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for pair in real_hh.examples:
        row = rows[pair.meta["row"] - 1]
        for x, y, text in ((pair.x_pos, pair.y_pos, row["chosen"]), (pair.x_neg, pair.y_neg, row["rejected"])):
            assert render_prompt(x).endswith("\n\nAssistant:")
            assert x[0].role == "user"
            assert render_prompt(x) + " " + y == text
            assert y.strip()


@needs_hh
def test_real_file_counts_multi_turn_prompts_and_the_rows_whose_prompts_differ(real_hh):
    examples, report = real_hh
    multi = sum(sum(m.role == "user" for m in p.x_pos) > 1 for p in examples)
    assert report.counts["multi-turn"] == multi == 1649
    assert report.counts["x_pos != x_neg"] == sum(p.x_pos != p.x_neg for p in examples) == 5


@needs_hh
def test_real_file_with_a_limit_stops_early(real_hh):
    examples, report = load(DatasetSpec("hh-rlhf", path=str(HH_FILE), limit=10))
    assert examples == real_hh.examples[:10]
    assert report.limited and report.rows_read == 10


def test_the_parser_doctests_hold():
    import doctest

    import evalharness.data.hh as hh

    assert doctest.testmod(hh).failed == 0
