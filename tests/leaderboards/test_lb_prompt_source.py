"""The prompt-set part of a board's evaluation: the set's name, the content hash of what it was read from (its file;
for the generated synthetic set, its generator's parameters) and its split, in the board's header and JSON meta."""

import json

from lbstore import make_store

from evalharness.data.prompts import PromptSetSpec, load_prompts, source_of
from evalharness.generate import _store_prompts
from evalharness.store import Store
from tests.reliability.helpers import invoke


def _jsonl(path, questions):
    path.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    return str(path)


def test_a_file_s_bytes_name_its_prompts_and_the_split_is_kept(tmp_path):
    a = load_prompts(PromptSetSpec("jsonl", path=_jsonl(tmp_path / "a.jsonl", ["one?", "two?"])))
    b = load_prompts(PromptSetSpec("jsonl", path=_jsonl(tmp_path / "b.jsonl", ["one?", "two?", "three?"]),
                                   split="test"))
    assert {p.meta["source_hash"] for p in a.prompts} == {source_of(PromptSetSpec("jsonl", path=str(tmp_path / "a.jsonl")),
                                                                    a.report)}
    assert a.prompts[0].id == b.prompts[0].id  # the same question: one prompt id...
    assert a.prompts[0].meta["source_hash"] != b.prompts[0].meta["source_hash"]  # ...read from another file
    assert (a.prompts[0].meta["split"], b.prompts[0].meta["split"]) == (None, "test")


def test_the_synthetic_set_is_named_by_its_generator_whatever_the_limit():
    few, more = (load_prompts(PromptSetSpec("synthetic", limit=n)).prompts for n in (2, 5))
    assert len({p.meta["source_hash"] for p in few + more}) == 1
    assert few[0].meta["source_hash"] != source_of(PromptSetSpec("synthetic", limit=2),
                                                   load_prompts(PromptSetSpec("synthetic", limit=2)).report)


def test_the_board_header_and_json_meta_name_the_prompts_source(tmp_path):
    loaded = load_prompts(PromptSetSpec("jsonl", path=_jsonl(tmp_path / "q.jsonl", ["one?", "two?"]), split="dev"))
    store = Store(str(tmp_path / "s.duckdb"))
    _store_prompts(store, "jsonl", loaded.prompts)  # as `generate` stores them
    make_store(None, [(p.id, "m1", "base", "first", "second") for p in loaded.prompts], store=store,
               prompt_set="jsonl")
    source = loaded.prompts[0].meta["source_hash"]
    shown = invoke(["leaderboard", "--bootstrap", "0", "--store", "s.duckdb"], tmp_path)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].endswith(f", prompts {source} split dev"), shown.stdout
    exported = invoke(["leaderboard", "--format", "json", "--bootstrap", "0", "--store", "s.duckdb"], tmp_path)
    assert json.loads(exported.stdout)["meta"]["prompts_source"] == f"{source} split dev"


def test_the_judges_report_names_the_prompts_source_too(tmp_path):
    loaded = load_prompts(PromptSetSpec("jsonl", path=_jsonl(tmp_path / "q.jsonl", ["one?", "two?"])))
    store = Store(str(tmp_path / "s.duckdb"))
    _store_prompts(store, "jsonl", loaded.prompts)
    make_store(None, [(p.id, "m1", "base", "first", "second") for p in loaded.prompts], store=store,
               prompt_set="jsonl")
    source = loaded.prompts[0].meta["source_hash"]
    shown = invoke(["judges", "report", "--store", "s.duckdb"], tmp_path)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].endswith(f", prompts {source}"), shown.stdout
    exported = invoke(["judges", "report", "--format", "json", "--store", "s.duckdb"], tmp_path)
    assert json.loads(exported.stdout)["tables"][0]["meta"]["prompts_source"] == source
