"""Prompt sets: the real benchmark files in ../shared/data, every registry entry's contract, the jsonl/json loaders'
formats and bad input, reference-answer files, and a fuzz of the local-file loaders."""

import gzip
import json
import tempfile
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalharness.data.hh import split_dialogue
from evalharness.data.prompts import BUILTIN_PROMPT_SETS, LoadedPrompts, PromptSetSpec, load_prompts
from evalharness.data.types import DataError, Message, Prompt
from evalharness.hashing import content_hash
from evalharness.plugins import registry
from evalharness.registry import RegistryError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def real(rel: str) -> str:
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"{rel} is not in the shared data folder ({DATA})")
    return str(path)


def load(name, **kw) -> LoadedPrompts:
    return load_prompts(PromptSetSpec(name, **kw))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def check_contract(prompts: list[Prompt]) -> None:
    """What every prompt set promises the generator."""
    assert len({p.id for p in prompts}) == len(prompts)
    for p in prompts:
        assert isinstance(p, Prompt) and p.messages and all(isinstance(m, Message) for m in p.messages)
        assert {"source_id", "category"} <= set(p.meta)
        assert p.reference is None or p.reference.strip()
        if "turns" in p.meta:
            assert len(p.meta["turns"]) > 1 and p.messages == (Message("user", p.meta["turns"][0]),)


# ------------------------------------------------------------------------------------------------- real files


def test_mt_bench_has_80_two_turn_questions_in_8_categories_with_30_gpt4_references():
    prompts, report = load("mt-bench", path=real("mt-bench/question.jsonl"))
    check_contract(prompts)
    assert len(prompts) == 80 and report.rows_read == 80
    assert all(len(p.meta["turns"]) == 2 for p in prompts)
    assert Counter(p.meta["category"] for p in prompts) == {c: 10 for c in [
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]}
    with_ref = [p for p in prompts if p.reference is not None]
    assert len(with_ref) == report.counts["references"] == 30  # found beside the question file
    assert {p.meta["category"] for p in with_ref} == {"math", "reasoning", "coding"}  # the categories FastChat grades
    assert all(len(p.meta["reference_turns"]) == 2 and p.meta["reference_model"] == "gpt-4" for p in with_ref)
    assert sum("question_reference" in p.meta for p in prompts) == 39  # the question file's own hints, kept apart
    assert [p.meta["source_id"] for p in prompts] == list(range(81, 161))


def test_vicuna_bench_has_80_single_turn_questions_and_10_references():
    prompts, report = load("vicuna-bench", path=real("vicuna-bench/question.jsonl"))
    check_contract(prompts)
    assert len(prompts) == 80 and not any("turns" in p.meta for p in prompts)
    assert len(Counter(p.meta["category"] for p in prompts)) == 9
    assert sorted(p.meta["source_id"] for p in prompts if p.reference) == list(range(61, 71))
    assert report.counts["references"] == 10


@pytest.mark.parametrize("generator,references", [("text_davinci_003", 803), ("gpt4_1106_preview", 805)])
def test_alpaca_eval_has_805_instructions_with_the_baseline_as_reference(generator, references):
    path = real(f"alpaca-eval/{generator}/model_outputs.json")
    prompts, report = load("alpaca-eval", path=path)
    check_contract(prompts)
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    assert len(prompts) == len(raw) == 805
    assert report.counts["references"] == references  # text_davinci_003 has 2 blank outputs
    assert report.counts.get("empty reference", 0) == 805 - references
    for p, r in zip(prompts, raw):
        assert p.messages == (Message("user", r["instruction"]),) and p.meta["generator"] == generator
        assert p.reference == (r["output"] if r["output"].strip() else None)
    assert Counter(p.meta["category"] for p in prompts) == {
        "selfinstruct": 252, "oasst": 188, "koala": 156, "helpful_base": 129, "vicuna": 80}


def test_alpaca_eval_ids_do_not_depend_on_the_baseline_file():
    a = load("alpaca-eval", path=real("alpaca-eval/text_davinci_003/model_outputs.json")).prompts
    b = load("alpaca-eval", path=real("alpaca-eval/gpt4_1106_preview/model_outputs.json")).prompts
    assert [p.id for p in a] == [p.id for p in b]
    assert sum(x.reference != y.reference for x, y in zip(a, b)) >= 800


def test_arena_hard_has_500_prompts_with_gpt4_0314_baseline_answers():
    prompts, report = load("arena-hard", path=real("arena-hard-v0.1/question.jsonl"))
    check_contract(prompts)
    assert len(prompts) == 500 and report.counts["references"] == 500
    assert {p.meta["reference_model"] for p in prompts} == {"gpt-4-0314"}
    assert {p.meta["category"] for p in prompts} == {"arena-hard-v0.1"}
    assert len({p.meta["cluster"] for p in prompts}) == 250
    assert all(len(p.meta["source_id"]) == 32 for p in prompts)  # the uids


def test_hh_rlhf_test_prompts_are_deduplicated_with_the_chosen_response_as_reference():
    path = real("hh-rlhf/harmless-base-test.jsonl.gz")
    prompts, report = load("hh-rlhf", path=path)
    check_contract(prompts)
    assert report.rows_read == 2312 and len(prompts) == 2310 and report.skipped == {"duplicate": 2}
    assert report.counts["references"] == 2306 and report.counts["empty reference"] == 4
    assert report.counts["multi-turn"] == 1650  # history with more than one human turn, kept as messages
    with gzip.open(path, "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert (prompts[0].messages, prompts[0].reference) == split_dialogue(first["chosen"])


@pytest.mark.parametrize("name,rel", [
    ("mt-bench", "mt-bench/question.jsonl"),
    ("vicuna-bench", "vicuna-bench/question.jsonl"),
    ("alpaca-eval", "alpaca-eval/text_davinci_003/model_outputs.json"),
    ("arena-hard", "arena-hard-v0.1/question.jsonl"),
    ("hh-rlhf", "hh-rlhf/harmless-base-test.jsonl.gz"),
])
def test_real_ids_are_stable_across_loads_and_limit_keeps_the_first_n(name, rel):
    path = real(rel)
    full, again = load(name, path=path), load(name, path=path)
    assert [p.id for p in full.prompts] == [p.id for p in again.prompts]
    assert [p.reference for p in full.prompts] == [p.reference for p in again.prompts]
    part = load(name, path=path, limit=7)
    assert [p.id for p in part.prompts] == [p.id for p in full.prompts[:7]]
    assert part.report.limited and part.report.rows_read == 7
    assert load(name, path=path, limit=0).prompts == []


def test_a_reference_file_of_another_set_is_an_error():
    questions = real("mt-bench/question.jsonl")
    wrong = real("vicuna-bench/reference_answer_gpt-4.jsonl")
    with pytest.raises(DataError, match="none of its 10 answers has a question id of this set") as e:
        load("mt-bench", path=questions, reference_path=wrong)
    assert e.value.source == wrong
    with pytest.raises(DataError, match="no such file"):
        load("mt-bench", path=questions, reference_path=str(Path(questions).parent / "nope.jsonl"))


# ---------------------------------------------------------------------------------------- registry and contract


def test_prompt_sets_register_through_the_entry_point_hook():
    values = {ep.value for ep in entry_points(group="evalharness.prompts")}
    assert "evalharness.data.prompts:register" in values
    assert registry("prompts").names() == sorted(BUILTIN_PROMPT_SETS)
    with pytest.raises(RegistryError, match=r"unknown prompt set 'mt-bnech'; did you mean 'mt-bench'"):
        load("mt-bnech")


FIXTURES = {  # preset -> (file name, records) in the preset's layout, written by the test
    "mt-bench": ("question.jsonl", [{"question_id": 1, "category": "math", "turns": ["1+1?", "And 2+2?"]},
                                    {"question_id": 2, "category": "writing", "turns": ["A haiku.", "Shorter."]}]),
    "vicuna-bench": ("question.jsonl", [{"question_id": 1, "category": "generic", "turns": ["Hi?"]}]),
    "arena-hard": ("question.jsonl", [{"uid": "a1", "category": "arena-hard-v0.1", "cluster": "c", "prompt": "Hi?"},
                                      {"question_id": "a2", "category": "x", "turns": [{"content": "Yo?"}]}]),
    "alpaca-eval": ("outputs.json", [{"instruction": "Hi?", "output": "Hello.", "generator": "g", "dataset": "d"}]),
    "hh-rlhf": ("hh.jsonl", [{"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: no"},
                             {"chosen": "\n\nHuman: hi\n\nAssistant: hey", "rejected": "x"}]),
    "jsonl": ("p.jsonl", [{"prompt": "Hi?"}, {"turns": ["a", "b"]}, {"messages": [{"role": "user", "content": "c"}]}]),
    "json": ("p.json", [{"prompt": "Hi?", "id": 3, "reference": "Hello."}]),
    "synthetic": (None, None),
}


def _write_fixture(tmp_path, name):
    file_name, records = FIXTURES[name]
    if file_name is None:
        return None
    path = tmp_path / file_name
    if file_name.endswith(".json"):
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        write_jsonl(path, records)
    return str(path)


@pytest.mark.parametrize("name", sorted(BUILTIN_PROMPT_SETS))
def test_every_registered_prompt_set_keeps_the_contract(tmp_path, name):
    assert name in FIXTURES, f"add a fixture for the new prompt set {name!r}"
    path = _write_fixture(tmp_path, name)
    loaded = load(name, path=path)
    assert isinstance(loaded, LoadedPrompts) and loaded.prompts
    check_contract(loaded.prompts)
    assert loaded.report.examples == len(loaded.prompts)
    assert [p.id for p in load(name, path=path).prompts] == [p.id for p in loaded.prompts]


def test_the_fixture_layouts_parse_as_documented(tmp_path):
    mt = load("mt-bench", path=_write_fixture(tmp_path, "mt-bench")).prompts
    assert mt[0].meta["turns"] == ["1+1?", "And 2+2?"] and mt[0].reference is None
    arena = load("arena-hard", path=_write_fixture(tmp_path, "arena-hard")).prompts
    assert [(p.meta["source_id"], p.messages[0].content) for p in arena] == [("a1", "Hi?"), ("a2", "Yo?")]
    hh = load("hh-rlhf", path=_write_fixture(tmp_path, "hh-rlhf"))
    assert [p.reference for p in hh.prompts] == ["yo"] and hh.report.skipped == {"duplicate": 1}


def test_hub_presets_fail_offline_in_one_line_naming_the_file_to_pass():
    for name in ("mt-bench", "arena-hard", "hh-rlhf"):  # conftest sets HF_HUB_OFFLINE=1
        with pytest.raises(DataError, match=r"could not load from the hub .*pass path=") as e:
            load(name)
        assert "\n" not in str(e.value)
    for name in ("vicuna-bench", "alpaca-eval", "jsonl", "json"):  # no hub copy loads: say so before trying
        with pytest.raises(DataError, match="path=") as e:
            load(name)
        assert e.value.field == "path"


def test_synthetic_prompts_default_to_64_and_limit_is_the_size():
    full, report = load("synthetic")
    assert len(full) == 64 and report.source == "generated"
    assert [p.id for p in load("synthetic", limit=5).prompts] == [p.id for p in full[:5]]
    assert full[0].messages[0].content.startswith("Write a short review of")
    with pytest.raises(DataError, match="reads no source"):
        load("synthetic", path="x.jsonl")


def test_spec_checks_its_fields():
    with pytest.raises(ValueError, match="PromptSetSpec.limit"):
        PromptSetSpec("jsonl", limit=-1)
    with pytest.raises(ValueError, match="PromptSetSpec.name"):
        PromptSetSpec("")
    with pytest.raises(ValueError, match="PromptSetSpec.reference_path"):
        PromptSetSpec("mt-bench", reference_path="")
    assert PromptSetSpec("jsonl", path=Path("a.jsonl")).path == "a.jsonl"


# ------------------------------------------------------------------------------------------------ local files


def test_every_prompt_form_of_a_jsonl_file(tmp_path):
    rows = [
        {"prompt": "Name a colour."},
        {"prompt": ["Pick a number.", "Double it."], "reference": ["7", "14"], "category": "math"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}]},
        {"turns": ["One.", "Two."]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]},
    ]
    prompts, report = load("jsonl", path=write_jsonl(tmp_path / "p.jsonl", rows))
    check_contract(prompts)
    assert prompts[0].messages == (Message("user", "Name a colour."),) and "turns" not in prompts[0].meta
    assert prompts[1].meta["turns"] == ["Pick a number.", "Double it."] and prompts[1].reference == "7"
    assert prompts[1].meta["reference_turns"] == ["7", "14"] and prompts[1].meta["category"] == "math"
    assert prompts[2].messages == (Message("system", "Be brief."), Message("user", "Hi."))
    assert prompts[3].meta["turns"] == ["One.", "Two."]
    assert [m.role for m in prompts[4].messages] == ["user", "assistant", "user"] and "turns" not in prompts[4].meta
    assert report.counts == {"references": 1, "multi-turn": 3}


def test_the_id_is_the_hash_of_set_source_id_and_turns(tmp_path):
    rows = [{"prompt": "hi"}, {"prompt": ["hi", "again"]}, {"id": "q1", "prompt": "hi"}]
    prompts = load("jsonl", path=write_jsonl(tmp_path / "p.jsonl", rows)).prompts
    assert prompts[0].id == content_hash(["prompt", "file", None, [["user", "hi"]], []])
    assert prompts[1].id == content_hash(["prompt", "file", None, [["user", "hi"]], ["again"]])
    assert prompts[2].id == content_hash(["prompt", "file", "q1", [["user", "hi"]], []])
    assert [p.meta["source_id"] for p in prompts] == [1, 2, "q1"]


def test_ids_ignore_format_column_names_extra_columns_and_row_order(tmp_path):
    rows = [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b"}]
    base = [p.id for p in load("jsonl", path=write_jsonl(tmp_path / "a.jsonl", rows)).prompts]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    assert [p.id for p in load("json", path=str(tmp_path / "a.json")).prompts] == base
    renamed = [{"qid": r["id"], "text": r["prompt"], "extra": 0} for r in reversed(rows)]
    moved = load("jsonl", path=write_jsonl(tmp_path / "b.jsonl", renamed), columns={"id": "qid", "prompt": "text"})
    assert [p.id for p in moved.prompts] == base[::-1]


def test_a_repeated_prompt_is_kept_once_and_counted(tmp_path):
    rows = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a", "extra": 1}, {"id": 7, "prompt": "c"},
            {"id": 7, "prompt": "c"}]
    prompts, report = load("jsonl", path=write_jsonl(tmp_path / "p.jsonl", rows))
    assert [p.messages[0].content for p in prompts] == ["a", "b", "c"]
    assert report.skipped == {"duplicate": 2} and report.skipped_at[0].endswith(":3: duplicate")


def test_a_mapped_prompt_column_decides_between_prompt_turns_and_messages(tmp_path):
    rows = [{"id": "q0", "turns": ["Name a colour.", "Why?"], "prompt": "ignored"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    [p] = load("jsonl", path=path, columns={"prompt": "turns"}).prompts  # as `evalharness generate` passes it
    assert p.meta["turns"] == ["Name a colour.", "Why?"]
    with pytest.raises(DataError, match="holds both 'prompt' and 'turns'; map one"):
        load("jsonl", path=path)


BAD = [  # (rows, columns, row, field, message)
    ([{"text": "a"}], {}, 1, "prompt", r"expected one of prompt, turns, messages, .*present: text"),
    ([{"prompt": "a"}, {"prompt": "  "}], {}, 2, "prompt", "empty prompt turn"),
    ([{"prompt": ["a", ""]}], {}, 1, "prompt[1]", "empty prompt turn"),
    ([{"prompt": []}], {}, 1, "prompt", "got an empty list"),
    ([{"prompt": 3}], {}, 1, "prompt", "got a number"),
    ([{"prompt": ["a", 3]}], {}, 1, "prompt[1]", "expected a string turn"),
    ([{"turns": [{"text": "a"}]}], {}, 1, "turns[0]", "has no 'content'"),
    ([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}], {}, 1, "messages",
     "must end with a user message, got assistant"),
    ([{"messages": [{"role": "usr", "content": "a"}]}], {}, 1, "messages[0].role", "did you mean 'user'"),
    ([{"messages": [{"role": "user", "content": " "}]}], {}, 1, "messages[0].content", "empty prompt turn"),
    ([{"prompt": "a", "messages": []}], {}, 1, "messages", "holds both"),
    ([{"prompt": "a", "id": True}], {}, 1, "id", "string or integer id"),
    ([{"prompt": "a", "id": 1}, {"prompt": "b", "id": 1}], {}, 2, "id",
     r"duplicate id 1 on a different prompt \(first at row 1\)"),
    ([{"prompt": "a", "reference": 5}], {}, 1, "reference", "got a number"),
    ([{"prompt": "a", "category": ["x"]}], {}, 1, "category", "expected a string"),
    ([{"prompt": "a"}], {"id": "qid"}, 1, "qid", "missing column"),
    ([{"prompt": "a\ud800"}], {}, 1, "prompt", "unpaired surrogate"),
]


@pytest.mark.parametrize("rows,columns,row,field,message", BAD)
def test_bad_rows_name_file_row_and_field_and_return_nothing(tmp_path, rows, columns, row, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8", errors="surrogatepass")
    with pytest.raises(DataError, match=message) as e:
        load("jsonl", path=str(path), columns=columns)
    assert (e.value.source, e.value.row, e.value.field) == (str(path), row, field), str(e.value)


def test_bad_files_and_mappings(tmp_path):
    with pytest.raises(DataError, match="holds no records"):
        load("jsonl", path=write_jsonl(tmp_path / "empty.jsonl", []))
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(DataError, match="malformed JSON") as e:
        load("jsonl", path=str(tmp_path / "broken.jsonl"))
    assert e.value.row == 2
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}])
    with pytest.raises(DataError, match="unknown role 'promt'; did you mean 'prompt'"):
        load("jsonl", path=path, columns={"promt": "x"})
    with pytest.raises(DataError, match="maps prompt and messages"):
        load("jsonl", path=path, columns={"prompt": "a", "messages": "b"})
    with pytest.raises(DataError, match="no such file"):
        load("json", path=str(tmp_path / "missing.json"))


# ------------------------------------------------------------------------------------------- reference answers


def test_reference_files_in_both_layouts_attach_by_question_id(tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", [
        {"question_id": 1, "category": "math", "turns": ["1+1?", "Times 3?"]},
        {"question_id": 2, "category": "math", "turns": ["2+2?", "Times 3?"]}])
    (tmp_path / "reference_answer").mkdir()
    write_jsonl(tmp_path / "reference_answer" / "gpt-4.jsonl",  # FastChat's own layout, found beside the questions
                [{"question_id": 2, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["4", "12"]}]}])
    prompts, report = load("mt-bench", path=questions)
    assert [p.reference for p in prompts] == [None, "4"] and prompts[1].meta["reference_turns"] == ["4", "12"]
    assert report.counts["references"] == 1
    arena = write_jsonl(tmp_path / "answers.jsonl", [  # Arena-Hard's layout, given explicitly
        {"uid": "1", "model": "base", "messages": [{"role": "user", "content": "1+1?"},
                                                   {"role": "assistant", "content": {"answer": "2"}}]},
        {"uid": "9", "model": "base", "messages": [{"role": "assistant", "content": "?"}]}])
    prompts, report = load("mt-bench", path=questions, reference_path=arena)
    assert [p.reference for p in prompts] == ["2", None] and prompts[0].meta["reference_model"] == "base"
    assert report.notes == [f"references from {arena} (1 match no question read)"]


@pytest.mark.parametrize("answer,row,field,message", [
    ({"question_id": 1, "choices": []}, 1, "choices", "non-empty list"),
    ({"question_id": 1}, 1, None, "under 'choices'"),
    ({"uid": 1, "messages": [{"role": "user", "content": "q"}]}, 1, "messages", "no assistant message"),
    ({"uid": 1, "messages": [{"role": "assistant", "content": {"text": "a"}}]}, 1, "messages[0].content.answer",
     "expected the answer text"),
    ({"choices": [{"turns": ["a"]}]}, 1, "question_id", "missing column"),
])
def test_bad_reference_files_name_row_and_field(tmp_path, answer, row, field, message):
    questions = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["a"]}])
    answers = write_jsonl(tmp_path / "a.jsonl", [answer])
    with pytest.raises(DataError, match=message) as e:
        load("vicuna-bench", path=questions, reference_path=answers)
    assert (e.value.source, e.value.row, e.value.field) == (answers, row, field)


def test_a_second_answer_for_one_question_is_an_error(tmp_path):
    questions = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["a"]}])
    answer = {"question_id": 1, "choices": [{"turns": ["x"]}]}
    answers = write_jsonl(tmp_path / "a.jsonl", [answer, answer])
    with pytest.raises(DataError, match=r"a second answer for id 1 \(the first is at row 1\)") as e:
        load("vicuna-bench", path=questions, reference_path=answers)
    assert e.value.row == 2


# ------------------------------------------------------------------------------------------------------ fuzz

KEYS = ["prompt", "turns", "messages", "id", "reference", "category", "role", "content", "text"]
odd_texts = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "\ud800", "é", "user", "assistant"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), odd_texts)
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner,
                                                                                    max_size=3)),
    max_leaves=12,
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "bot"]),
                                           "content": texts}), max_size=2).map(
    lambda ms: ms + [{"role": "user", "content": "go"}])
shaped = st.fixed_dictionaries({}, optional={
    "prompt": st.one_of(texts, st.lists(texts, min_size=1, max_size=3), messages, json_values),
    "turns": st.one_of(st.lists(texts, max_size=3), json_values),
    "messages": st.one_of(messages, json_values),
    "id": st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"]), json_values),
    "reference": st.one_of(st.none(), texts, st.lists(texts, max_size=2), json_values),
    "category": st.one_of(st.none(), texts, json_values),
})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def _fuzz_load(preset, suffix, payload: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"p{suffix}"
        path.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
        try:
            result = load(preset, path=str(path))
        except DataError as e:
            assert "\n" not in str(e).split(": ", 1)[0]
            return None
        check_contract(result.prompts)
        assert result.report.examples == len(result.prompts)
        return result


SUFFIXES = {"jsonl": (".jsonl", ".jsonl.gz"), "json": (".json",), "mt-bench": (".jsonl",),
            "arena-hard": (".jsonl",), "alpaca-eval": (".json",), "hh-rlhf": (".jsonl",)}


@FUZZ
@given(st.sampled_from(sorted(SUFFIXES)), st.data(), st.binary(max_size=120))
def test_random_bytes_load_or_raise_data_error(preset, data, payload):
    _fuzz_load(preset, data.draw(st.sampled_from(SUFFIXES[preset])), payload)


@FUZZ
@given(st.sampled_from(["jsonl", "json"]), st.lists(st.one_of(shaped, json_values), max_size=3), st.booleans())
def test_random_records_load_or_raise_data_error(preset, rows, ascii_only):
    if preset == "json":
        text = json.dumps(rows, ensure_ascii=ascii_only)
    else:
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows)
    _fuzz_load(preset, f".{preset}", text.encode("utf-8", "surrogatepass"))


def test_the_fuzzed_records_reach_the_happy_path_too():
    """Guards the fuzz above against a strategy so broken that every draw is an error."""
    hits = []

    @settings(max_examples=200, database=None, deadline=None)
    @given(shaped)
    def draw(row):
        if not hits and _fuzz_load("jsonl", ".jsonl", (json.dumps(row) + "\n").encode()):
            hits.append(row)

    draw()
    assert hits
