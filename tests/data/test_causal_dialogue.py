"""The causal-dialogue DAG loader on a small dialogue the test writes (the project's own text)."""

import json

import pytest

from evalharness.data.loaders import DatasetSpec, load
from evalharness.data.types import DataError, Message


def utt(id_, speaker, text, parents=()):
    return {"id": id_, "speaker": speaker, "text": text, "parents": list(parents)}


# u1 opens; u2, u3 and u7 branch from it; u4 replies to u2, u5 to u3; u6 replies to both u2 and u3 (a merge).
DIALOGUE = {
    "id": "market",
    "background": "Two friends and a neighbour talk.",
    "utterances": [
        utt("u1", "Ana", "Shall we go to the market?"),
        utt("u2", "Bo", "Yes, I need bread.", ["u1"]),
        utt("u3", "Bo", "No, it is raining.", ["u1"]),
        utt("u4", "Ana", "Then let us hurry.", ["u2"]),
        utt("u5", "Ana", "Then we stay home.", ["u3"]),
        utt("u6", "Cy", "I will come either way.", ["u2", "u3"]),
        utt("u7", "Bo", "Maybe later.", ["u1"]),
    ],
}
SYSTEM = Message("system", "Two friends and a neighbour talk.")


def ctx(*lines, responder):
    return (SYSTEM,) + tuple(Message("assistant" if s == responder else "user", f"{s}: {t}") for s, t in lines)


U1, U2, U3, U7 = (
    ("Ana", "Shall we go to the market?"),
    ("Bo", "Yes, I need bread."),
    ("Bo", "No, it is raining."),
    ("Bo", "Maybe later."),
)


def write(tmp_path, dialogues, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(d) + "\n" for d in dialogues))
    return str(path)


def test_pairs_are_the_same_response_after_its_true_context_and_a_sibling_branch(tmp_path):
    examples, report = load(DatasetSpec("causal-dialogue", path=write(tmp_path, [DIALOGUE])))
    got = [(p.meta["response"], p.meta["parent"], p.meta["negative"]) for p in examples]
    # Worked by hand. u2, u3, u7 reply to the root, which has no siblings: no pairs. u4 (parent u2): siblings u3, u7.
    # u5 (parent u3): siblings u2, u7. u6: parent u2's sibling u3 is also u6's parent (true context), so only u7;
    # likewise parent u3 -> only u7.
    assert got == [
        ("u4", "u2", "u3"),
        ("u4", "u2", "u7"),
        ("u5", "u3", "u2"),
        ("u5", "u3", "u7"),
        ("u6", "u2", "u7"),
        ("u6", "u3", "u7"),
    ]
    first = examples[0]
    assert first.x_pos == ctx(U1, U2, responder="Ana")
    assert first.x_neg == ctx(U1, U3, responder="Ana")
    assert first.y_pos == first.y_neg == "Then let us hurry."
    for p in examples:
        assert p.x_pos != p.x_neg and p.y_pos == p.y_neg
    u6_from_u3 = examples[5]
    assert u6_from_u3.x_pos == ctx(U1, U3, responder="Cy") and u6_from_u3.x_neg == ctx(U1, U7, responder="Cy")
    assert report.counts == {"dialogues": 1, "utterances": 7}
    assert len({p.id for p in examples}) == 6


def test_context_follows_the_first_parent_and_a_json_file_may_wrap_dialogues(tmp_path):
    d = {
        "utterances": [
            utt(1, "A", "a"),
            utt(2, "B", "b", [1]),
            utt(3, "B", "c", [1]),
            utt(4, "A", "d", [3, 2]),
            utt(5, "C", "e", [2]),
        ]
    }
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"dialogues": [d]}))
    examples = load(DatasetSpec("causal-dialogue", path=str(path))).examples
    # u4's parents are [3, 2]: siblings of 3 are 2 (a parent) -> none; siblings of 2 are 3 (a parent) -> none.
    # u5 (parent 2): sibling 3 -> one pair, whose x- is the path 1 -> 3.
    [pair] = examples
    assert pair.x_pos == (Message("user", "A: a"), Message("user", "B: b"))
    assert pair.x_neg == (Message("user", "A: a"), Message("user", "B: c"))
    assert pair.y_pos == "e" and pair.meta["row"] == 1


def test_identical_contexts_are_skipped_and_counted(tmp_path):
    d = {"utterances": [utt("a", "A", "hi"), utt("b", "B", "same"), utt("c", "B", "same"), utt("d", "A", "x", ["b"])]}
    d["utterances"][1]["parents"] = ["a"]
    d["utterances"][2]["parents"] = ["a"]
    examples, report = load(DatasetSpec("causal-dialogue", path=write(tmp_path, [d])))
    assert examples == [] and report.skipped == {"identical contexts": 1}


@pytest.mark.parametrize(
    "utterances, field, match",
    [
        ([utt("a", "A", "x"), utt("a", "B", "y", ["a"])], "utterances[1].id", "duplicate utterance id"),
        (
            [utt("a", "A", "x"), utt("b", "B", "y", ["aa"])],
            "utterances[1].parents",
            "unknown utterance id 'aa'; did you mean 'a'",
        ),
        ([utt("a", "A", "x", ["b"]), utt("b", "B", "y", ["a"])], "utterances[1].parents", "cycle"),
        ([utt("a", "A", "x", ["a"])], "utterances[0].parents", "cycle"),
        ([utt("a", "A", "x"), utt("b", "", "y", ["a"])], "utterances[1].speaker", "empty speaker"),
        ([utt("a", "A", 5)], "utterances[0].text", "expected a string"),
        ([utt("a", "A", "x"), {"id": "b", "speaker": "B", "text": "y"}], "utterances[1]", "no 'parents'"),
        (
            [utt("a", "A", "x"), {**utt("b", "B", "y"), "parents": "a"}],
            "utterances[1].parents",
            "list of utterance ids",
        ),
        ([utt(True, "A", "x")], "utterances[0].id", "string or integer"),
        ([], "utterances", "non-empty list"),
    ],
)
def test_malformed_dags_name_row_and_field(tmp_path, utterances, field, match):
    path = write(tmp_path, [DIALOGUE, {"utterances": utterances}])
    with pytest.raises(DataError, match=match) as e:
        load(DatasetSpec("causal-dialogue", path=path))
    assert (e.value.row, e.value.field) == (2, field)


def test_an_empty_response_is_an_error_or_skipped_per_pair(tmp_path):
    d = json.loads(json.dumps(DIALOGUE))
    d["utterances"][3]["text"] = "  "  # u4
    path = write(tmp_path, [d])
    with pytest.raises(DataError, match="empty response") as e:
        load(DatasetSpec("causal-dialogue", path=path))
    assert (e.value.row, e.value.field) == (1, "utterances[3].text")
    examples, report = load(DatasetSpec("causal-dialogue", path=path, on_empty="skip"))
    assert len(examples) == 4 and report.skipped == {"empty response": 1}


def test_a_column_mapping_is_refused(tmp_path):
    with pytest.raises(DataError, match="unknown role"):
        load(DatasetSpec("causal-dialogue", path=write(tmp_path, [DIALOGUE]), columns={"prompt": "x"}))
