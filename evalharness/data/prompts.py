"""Prompt sets to sample from, named by a ``PromptSetSpec`` and looked up in the "prompts" registry.

``load_prompts(spec)`` looks ``spec.name`` up in the prompts registry (strict, with a "did you mean" hint) and returns
``LoadedPrompts(prompts, report)``: a ``list[Prompt]`` and the ``LoadReport`` the dataset loaders use (rows read,
prompts kept, skips by reason, ``counts`` such as ``references`` and ``multi-turn``, ``notes``). The presets are in
``prompt_presets``.

Every ``Prompt`` carries:

- ``id``: a content hash of (set name, source id, turn-1 messages, later turns). The source id is the set's own id
  (MT-Bench ``question_id``, Arena-Hard ``uid``, a jsonl ``id`` column) and is left out of the hash for sets that have
  none (AlpacaEval, HH-RLHF, a jsonl without ``id``), so those ids do not depend on row order. The same question read
  from a local file or from the hub gets the same id.
- ``messages``: what the model answers first: turn 1 as a user message, or a whole message history (HH-RLHF, a
  jsonl ``messages`` column).
- ``meta["turns"]``: every user turn ``[turn1, turn2, ...]``, present only when there is more than one; the generator
  asks turn t after the sample's own answer to turn t-1. ``meta["category"]`` (``None`` when the set has none) and
  ``meta["source_id"]`` (the set's id, or the record's 1-based position when it has none) are always present, and
  ``meta["source"]`` and ``meta["row"]`` for every prompt read from a file or the hub.
- ``reference``: the set's reference answer to turn 1, where it has one (``None`` for a blank one, counted as
  ``empty reference``); ``meta["reference_turns"]`` holds the answers to every turn when they come from an answers
  file.

Loading follows the dataset loaders' rules: bad input raises ``DataError`` naming the file, the 1-based row and the
field, and nothing is returned partially; a prompt identical to an earlier one (same id) is skipped and counted as
``duplicate``; ``limit`` keeps the first N prompts and stops reading. With no ``path``, a preset with a hub copy loads
it through ``datasets.load_dataset``; offline, that is one DataError line saying to pass ``path=``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from evalharness.data.loaders import (
    DatasetSpec,
    LoadReport,
    get_column,
    get_text,
    load_registered,
)
from evalharness.data.readers import Row, kind_of, read_file
from evalharness.data.types import DataError, Message, Prompt
from evalharness.hashing import content_hash

# name -> (target, one-line summary)
BUILTIN_PROMPT_SETS: dict[str, tuple[str, str]] = {
    "mt-bench": ("evalharness.data.prompt_presets:load_mt_bench",
                 "MT-Bench: 80 two-turn questions, GPT-4 reference answers where found (FastChat question.jsonl)"),
    "vicuna-bench": ("evalharness.data.prompt_presets:load_vicuna_bench",
                     "Vicuna bench: 80 single-turn questions, GPT-4 reference answers where found"),
    "alpaca-eval": ("evalharness.data.prompt_presets:load_alpaca_eval",
                    "AlpacaEval: 805 instructions from an outputs json; its outputs are the references"),
    "arena-hard": ("evalharness.data.prompt_presets:load_arena_hard",
                   "Arena-Hard v0.1: 500 prompts, GPT-4-0314 baseline answers where found"),
    "hh-rlhf": ("evalharness.data.prompt_presets:load_hh_rlhf",
                "HH-RLHF prompts (history up to the last Assistant turn), chosen response as reference, deduplicated"),
    "synthetic": ("evalharness.data.prompt_presets:load_synthetic", "the synthetic review task's prompts (no file)"),
    "jsonl": ("evalharness.data.prompt_presets:load_jsonl", "prompts from a local .jsonl(.gz) with a column mapping"),
    "json": ("evalharness.data.prompt_presets:load_json", "prompts from a local .json array with a column mapping"),
}


def register(registry) -> None:
    """The entry-point hook for the built-in prompt sets."""
    for name, (target, summary) in BUILTIN_PROMPT_SETS.items():
        registry.add(name, target, summary=summary)


@dataclass(frozen=True)
class PromptSetSpec:
    """What to load.

    ``name`` is a prompts-registry preset. ``path`` is a local file; without one, presets with a hub copy load
    ``hub_id`` (or the preset's own) at ``split`` (or the preset's default). ``columns`` maps the preset's roles to
    column names. ``limit`` keeps the first N prompts. ``reference_path`` is a file of reference answers (FastChat
    ``reference_answer/gpt-4.jsonl`` or Arena-Hard ``model_answer/gpt-4-0314.jsonl`` layout); without one, the
    benchmarks look for it beside a local question file.
    """

    name: str
    path: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    hub_id: str | None = None
    split: str | None = None
    reference_path: str | None = None

    def __post_init__(self):
        try:  # the same checks as a dataset spec: one set of rules for names, paths, columns and limits
            DatasetSpec(self.name, self.path, self.split, self.columns, self.limit, self.hub_id)
        except ValueError as e:
            raise ValueError(str(e).replace("DatasetSpec.", "PromptSetSpec.")) from None
        for name in ("path", "reference_path"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (str, Path)) or not str(value):
                raise ValueError(f"PromptSetSpec.{name} must be a file path, got {value!r}")
            object.__setattr__(self, name, str(value))


class LoadedPrompts(NamedTuple):
    prompts: list[Prompt]
    report: LoadReport


def load_prompts(spec: PromptSetSpec) -> LoadedPrompts:
    """Load ``spec`` through the prompts registry. Unknown names raise ``RegistryError`` with a "did you mean" hint.

    Every prompt's meta gets the set's ``source_hash`` and ``split`` (``source_of``): a board names the evaluation
    its prompts came from by them, since one set name may be read from two different files."""
    loaded = load_registered("prompts", spec, LoadedPrompts)
    source_hash = source_of(spec, loaded.report)
    for p in loaded.prompts:
        if p.meta is not None:
            p.meta.setdefault("source_hash", source_hash)  # a generated set's loader states its generator's own
            p.meta.setdefault("split", spec.split)
    return loaded


def source_of(spec: PromptSetSpec, report: LoadReport) -> str:
    """The content hash of what a set was read from: its file (and its reference answers file), or for a hub copy
    the dataset and split it names (the hub holds the bytes; their name and split are what a load asks for)."""
    parts: list[Any] = ["prompt-source"]
    for path in (spec.path, spec.reference_path):
        parts.append(None if path is None else file_hash(path))
    if spec.path is None:
        parts += [report.source, spec.hub_id, spec.split]
    return content_hash(parts, 8)


def file_hash(path: str) -> str | None:
    """SHA-256 of a file's bytes (None where it cannot be read: a directory of shards, say)."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------ prompts


def make_prompt(
    set_name: str,
    row: Row | None,
    source_id: Any,
    hash_source_id: bool,
    *,
    turns: tuple[str, ...] = (),
    messages: tuple[Message, ...] = (),
    reference: str | None = None,
    meta: dict | None = None,
) -> Prompt:
    """A ``Prompt`` from user ``turns`` (turn 1 becomes ``messages``) or from a whole message history."""
    if turns:
        messages = (Message("user", turns[0]),)
    later = list(turns[1:])
    pid = content_hash(["prompt", set_name, source_id if hash_source_id else None, messages, later])
    full = {"source_id": source_id, "category": None}
    if row is not None:
        full.update(source=row.source, row=row.number)
    full.update(meta or {})
    if later:
        full["turns"] = list(turns)
    return Prompt(pid, tuple(messages), reference, full)


def get_turns(row: Row, field_name: str, value: Any, allow_empty: bool = False) -> tuple[str, ...]:
    """User turns from a string (one turn), a list of strings, or a list of ``{content}`` objects (Arena-Hard)."""
    if isinstance(value, str):
        items = [(field_name, value)]
    elif isinstance(value, list) and value:
        items = []
        for i, item in enumerate(value):
            where = f"{field_name}[{i}]"
            if isinstance(item, dict):
                if "content" not in item:
                    raise row.error(where, f"turn object has no 'content' (keys: {', '.join(map(str, item)) or 'none'})")
                where, item = f"{where}.content", item["content"]
            items.append((where, item))
    else:
        got = "an empty list" if value == [] else kind_of(value)
        raise row.error(field_name, f"expected a string or a non-empty list of turns, got {got}")
    turns = []
    for where, item in items:
        if not isinstance(item, str):
            raise row.error(where, f"expected a string turn, got {kind_of(item)}")
        text = get_text(row, where, item)
        if not allow_empty and not text.strip():
            raise row.error(where, "empty prompt turn")
        turns.append(text)
    return tuple(turns)


def get_source_id(row: Row, field_name: str, value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise row.error(field_name, f"expected a string or integer id, got {kind_of(value)}")
    if isinstance(value, str):
        get_text(row, field_name, value)
        if not value.strip():
            raise row.error(field_name, "empty id")
    return value


def check_unique_id(row: Row, field_name: str, prompt: Prompt, seen: dict[str, tuple[int, str]]) -> None:
    """A source id may repeat only on an identical prompt (then skipped as a duplicate), never on a different one."""
    key = str(prompt.meta["source_id"])
    first = seen.setdefault(key, (row.number, prompt.id))
    if first[1] != prompt.id:
        raise row.error(field_name, f"duplicate id {prompt.meta['source_id']!r} on a different prompt "
                                    f"(first at row {first[0]})")


def get_optional_text(row: Row, field_name: str, value: Any) -> str | None:
    return None if value is None else get_text(row, field_name, value)


def nonblank(report: LoadReport, text: str | None) -> str | None:
    """``text``, or ``None`` (counted as ``empty reference``) when it is blank."""
    if text is not None and not text.strip():
        report.count("empty reference")
        return None
    return text


# ------------------------------------------------------------------------------------------- reference answers


@dataclass(frozen=True)
class Answer:
    turns: tuple[str, ...]
    model: str | None
    row: int


def read_answers(path: str) -> dict[str, Answer]:
    """Reference answers by question id (as a string) from a jsonl in either layout:
    FastChat ``{question_id, model_id, choices: [{turns: [str, ...]}]}`` or Arena-Hard
    ``{uid, model, messages: [..., {role: "assistant", content: {answer: str}}]}``."""
    out: dict[str, Answer] = {}
    for row in read_file(path):
        record = row.mapping()
        key_col = "uid" if "uid" in record else "question_id"
        key = get_source_id(row, key_col, get_column(row, key_col))
        if "choices" in record:
            turns = _choice_turns(row, record["choices"])
        elif "messages" in record:
            turns = _assistant_turns(row, record["messages"])
        else:
            raise row.error(None, "expected the answer under 'choices' (FastChat) or 'messages' (Arena-Hard)")
        model = record.get("model_id", record.get("model"))
        if model is not None:
            model = get_text(row, "model_id" if "model_id" in record else "model", model)
        if str(key) in out:
            raise row.error(key_col, f"a second answer for id {key!r} (the first is at row {out[str(key)].row})")
        out[str(key)] = Answer(turns, model, row.number)
    if not out:
        raise DataError(path, None, None, "holds no records")
    return out


def _choice_turns(row: Row, choices: Any) -> tuple[str, ...]:
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise row.error("choices", f"expected a non-empty list of {{turns}} objects, got {kind_of(choices)}")
    if "turns" not in choices[0]:
        raise row.error("choices[0]", "has no 'turns'")
    return get_turns(row, "choices[0].turns", choices[0]["turns"], allow_empty=True)


def _assistant_turns(row: Row, messages: Any) -> tuple[str, ...]:
    if not isinstance(messages, list):
        raise row.error("messages", f"expected a list of messages, got {kind_of(messages)}")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise row.error(f"messages[{i}]", f"expected a {{role, content}} message, got {kind_of(m)}")
        if m.get("role") != "assistant":
            continue
        content = m.get("content")
        where = f"messages[{i}].content"
        if isinstance(content, dict):
            content, where = content.get("answer"), f"{where}.answer"
        if not isinstance(content, str):
            raise row.error(where, f"expected the answer text, got {kind_of(content)}")
        turns.append(get_text(row, where, content))
    if not turns:
        raise row.error("messages", "has no assistant message")
    return tuple(turns)


def attach_references(prompts: list[Prompt], answers: dict[str, Answer], path: str, report: LoadReport) -> list[Prompt]:
    """Set each prompt's ``reference`` (turn 1) and ``meta["reference_turns"]`` from ``answers`` by source id."""
    out, used = [], set()
    for p in prompts:
        answer = answers.get(str(p.meta["source_id"]))
        if answer is None:
            out.append(p)
            continue
        used.add(str(p.meta["source_id"]))
        meta = {**p.meta, "reference_turns": list(answer.turns)}
        if answer.model is not None:
            meta["reference_model"] = answer.model
        out.append(dataclasses.replace(p, reference=nonblank(report, answer.turns[0]), meta=meta))
    if not report.limited and not used:  # every question was read, so no match means the wrong file
        raise DataError(path, None, None, f"none of its {len(answers)} answers has a question id of this set; "
                                          "is it the reference file of another set?")
    unmatched = len(answers) - len(used)
    report.notes.append(f"references from {path}" + (f" ({unmatched} match no question read)" if unmatched else ""))
    return out
