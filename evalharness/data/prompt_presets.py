"""The built-in prompt sets (see ``prompts`` for the ``Prompt`` contract, ids and the loading rules).

Third-party sets are read from the files their projects publish, by path; ``columns`` maps the roles named below to
column names.

``mt-bench`` / ``vicuna-bench`` (roles ``id``, ``turns``, ``category``, ``question_reference``)
    FastChat ``question.jsonl``: ``{question_id, category, turns: [str, ...]}``. MT-Bench has two turns (``messages``
    is turn 1, ``meta["turns"]`` both); Vicuna one. With no path, mt-bench loads the hub copy ``lighteval/mt-bench``
    (same layout); vicuna-bench has none. The references are GPT-4's answers, the ones FastChat's judge is shown,
    from ``reference_path`` or, beside a local question file, ``reference_answer_gpt-4.jsonl`` or
    ``reference_answer/gpt-4.jsonl``. MT-Bench's own ``reference`` field (short human-written hints on some
    questions) is kept as ``meta["question_reference"]``, not as the reference.

``arena-hard`` (roles ``id``, ``turns``, ``category``, ``cluster``)
    Arena-Hard v0.1 ``question.jsonl``, either layout: ``{uid, category, cluster, prompt}`` or
    ``{question_id, category, cluster, turns: [{content}]}`` (the hub copy ``lmarena-ai/arena-hard-auto-v0.1``).
    References: the GPT-4-0314 baseline answers, from ``reference_path`` or, beside the question file,
    ``model_answer_gpt-4-0314.jsonl`` or ``model_answer/gpt-4-0314.jsonl``.

``alpaca-eval`` (roles ``turns``, ``reference``, ``generator``, ``category``)
    An AlpacaEval outputs json, ``[{instruction, output, generator, dataset}, ...]`` (805 records): the instruction is
    the prompt, the output the reference (the baseline whose file it is, e.g. ``text_davinci_003`` for AlpacaEval 1,
    ``gpt4_1106_preview`` for AlpacaEval 2), ``meta["generator"]`` names it and ``meta["category"]`` is the source
    ``dataset``. Ids hash the instruction only, so every outputs file of the set gives the same ids. The hub copy is
    a loading script that ``datasets`` no longer runs, so a path (or a ``hub_id`` in this layout) is needed.

``hh-rlhf`` (role ``chosen``)
    Anthropic HH-RLHF rows: the prompt is the ``chosen`` dialogue up to its last "\\n\\nAssistant:", its history kept
    as messages (see ``hh``); the reference is the chosen response. Identical prompts are kept once (the first row's
    chosen response is the reference). No path: the hub ``Anthropic/hh-rlhf`` at split ``test``.

``synthetic``
    The project's own review prompts (``evalharness.data.synthetic.prompts``): ``limit`` is the size (default 64).

``jsonl`` / ``json`` (roles ``prompt``, ``turns``, ``messages``, ``id``, ``reference``, ``category``)
    A local file. The prompt is ONE of: ``prompt`` (a string, a list of strings, one per turn, or a list of
    ``{role, content}`` messages), ``turns`` (a list of strings), ``messages`` (a list of ``{role, content}`` ending
    with a user message). A row holding more than one of those columns is an error unless ``columns`` maps one.
    ``id`` (string or integer) is optional and must be unique; ``reference`` is a string, a list of strings (one per
    turn) or null; ``category`` a string or null.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from evalharness.data.hh import HHFormatError, split_dialogue
from evalharness.data.loaders import (
    LoadReport,
    collect,
    get_column,
    get_messages,
    get_text,
    is_missing,
    open_source,
    resolve_columns,
)
from evalharness.data.prompts import (
    LoadedPrompts,
    PromptSetSpec,
    attach_references,
    check_unique_id,
    get_optional_text,
    get_source_id,
    get_turns,
    make_prompt,
    nonblank,
    read_answers,
)
from evalharness.data.readers import Row, kind_of
from evalharness.data.types import DataError, Prompt
from evalharness.hashing import content_hash

# ------------------------------------------------------------------------------------------------- benchmarks


@dataclass(frozen=True)
class Bench:
    """A benchmark's question-file layout: each role's candidate columns (the first present wins)."""

    name: str
    roles: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    expects: str  # what path= should name, for error messages
    hub: tuple[str, str] | None = None  # (hub id, split) of a copy in this layout
    answer_files: tuple[str, ...] = ()  # reference-answer files looked for beside a local question file


_FASTCHAT_ROLES = {
    "id": ("question_id",),
    "turns": ("turns",),
    "category": ("category",),
    "question_reference": ("reference",),
}
_GPT4_ANSWERS = ("reference_answer_gpt-4.jsonl", "reference_answer/gpt-4.jsonl")

MT_BENCH = Bench("mt-bench", _FASTCHAT_ROLES, ("id", "turns"), "FastChat's mt_bench question.jsonl",
                 ("lighteval/mt-bench", "train"), _GPT4_ANSWERS)
VICUNA_BENCH = Bench("vicuna-bench", _FASTCHAT_ROLES, ("id", "turns"), "FastChat's vicuna_bench question.jsonl",
                     None, _GPT4_ANSWERS)
ARENA_HARD = Bench(
    "arena-hard",
    {"id": ("uid", "question_id"), "turns": ("prompt", "turns"), "category": ("category",), "cluster": ("cluster",)},
    ("id", "turns"),
    "Arena-Hard's arena-hard-v0.1/question.jsonl",
    ("lmarena-ai/arena-hard-auto-v0.1", "train"),
    ("model_answer_gpt-4-0314.jsonl", "model_answer/gpt-4-0314.jsonl"),
)
ALPACA_EVAL = Bench(
    "alpaca-eval",
    {"turns": ("instruction",), "reference": ("output",), "generator": ("generator",), "category": ("dataset",)},
    ("turns",),
    "an AlpacaEval outputs json such as text_davinci_003/model_outputs.json",
)


def load_mt_bench(spec: PromptSetSpec) -> LoadedPrompts:
    return _load_bench(spec, MT_BENCH)


def load_vicuna_bench(spec: PromptSetSpec) -> LoadedPrompts:
    return _load_bench(spec, VICUNA_BENCH)


def load_arena_hard(spec: PromptSetSpec) -> LoadedPrompts:
    return _load_bench(spec, ARENA_HARD)


def load_alpaca_eval(spec: PromptSetSpec) -> LoadedPrompts:
    return _load_bench(spec, ALPACA_EVAL)


def _load_bench(spec: PromptSetSpec, bench: Bench) -> LoadedPrompts:
    columns = resolve_columns(spec, tuple(bench.roles))
    candidates = {role: (columns[role],) if role in spec.columns else cols for role, cols in bench.roles.items()}
    report = LoadReport(spec.name, spec.name)
    rows = _open(spec, report, bench.hub, bench.expects)
    first_row: dict[str, tuple[int, str]] = {}  # source id -> (first row, prompt id)

    def convert(row: Row) -> list[Prompt]:
        found = {role: _pick(row, cols, role in bench.required) for role, cols in candidates.items()}
        (turns_col, raw_turns) = found["turns"]
        turns = get_turns(row, turns_col, raw_turns)
        if "id" in bench.roles:
            id_col, raw_id = found["id"]
            source_id, hashed = get_source_id(row, id_col, raw_id), True
        else:  # AlpacaEval has no ids: the position names the record, the content identifies it
            source_id, hashed = row.number, False
        text = {role: get_optional_text(row, col, value) if col else None
                for role, (col, value) in found.items() if role in ("category", "cluster", "generator", "reference")}
        reference = nonblank(report, text.pop("reference", None))
        meta = {k: v for k, v in text.items() if v is not None or k == "category"}
        col, value = found.get("question_reference", (None, None))
        if col and value not in (None, [], ""):
            hints = get_turns(row, col, value, allow_empty=True)
            if any(h.strip() for h in hints):
                meta["question_reference"] = list(hints)
        prompt = make_prompt(bench.name, row, source_id, hashed, turns=turns, reference=reference, meta=meta)
        if hashed:
            check_unique_id(row, found["id"][0], prompt, first_row)
        return [prompt]

    prompts = collect(report, rows, convert, spec.limit)
    answers_path = _answers_path(spec, bench)
    if answers_path is not None:
        prompts = attach_references(prompts, read_answers(answers_path), answers_path, report)
    return _finish(prompts, report)


def _pick(row: Row, columns: tuple[str, ...], required: bool) -> tuple[str | None, object]:
    """(column, value) of the first of ``columns`` the record holds; (None, None) for a missing optional role."""
    record = row.mapping()
    for col in columns:
        if col in record:
            return col, record[col]
    if not required:
        return None, None
    if len(columns) == 1:
        get_column(row, columns[0])  # raises the missing-column error with its hint
    present = ", ".join(sorted(map(str, record))) or "none"
    raise row.error(columns[0], f"missing column (expected one of {', '.join(columns)}; present: {present})")


def _answers_path(spec: PromptSetSpec, bench: Bench) -> str | None:
    if spec.reference_path is not None:
        return spec.reference_path
    if spec.path is None:  # a hub copy has no file beside it
        return None
    for name in bench.answer_files:
        candidate = Path(spec.path).parent / name
        if candidate.is_file():
            return str(candidate)
    return None


def _open(spec: PromptSetSpec, report: LoadReport, hub: tuple[str, str] | None, expects: str,
          fmt: str | None = None) -> Iterator[Row]:
    """The rows of a local ``path`` or of the hub; a hub failure says which file to pass instead."""
    if spec.path is None and spec.hub_id is None and hub is None:
        raise DataError(f"prompt set {spec.name!r}", None, "path",
                        f"needs path= to {expects} (or hub_id= and split= of a hub copy in that layout)")
    hub_id, split = hub or (None, None)
    rows = open_source(spec, report, hub_id=hub_id, split=split, fmt=fmt)
    return rows if spec.path is not None else _hinted(rows, expects)


def _hinted(rows: Iterator[Row], expects: str) -> Iterator[Row]:
    try:
        yield from rows
    except DataError as e:
        if e.row is not None:
            raise
        raise DataError(e.source, None, e.field, f"{e.problem} ({expects})") from None


def _finish(prompts: list[Prompt], report: LoadReport) -> LoadedPrompts:
    report.examples = len(prompts)
    report.counts["references"] = sum(p.reference is not None for p in prompts)
    report.counts["multi-turn"] = sum("turns" in p.meta or sum(m.role == "user" for m in p.messages) > 1
                                      for p in prompts)
    return LoadedPrompts(prompts, report)


# ----------------------------------------------------------------------------------------------------- hh-rlhf


def load_hh_rlhf(spec: PromptSetSpec) -> LoadedPrompts:
    columns = resolve_columns(spec, ("chosen",))
    report = LoadReport(spec.name, spec.name)
    rows = _open(spec, report, ("Anthropic/hh-rlhf", "test"), "an HH-RLHF jsonl(.gz) such as harmless-base-test")

    def convert(row: Row) -> list[Prompt]:
        name = columns["chosen"]
        try:
            history, response = split_dialogue(get_text(row, name, get_column(row, name)))
        except HHFormatError as e:
            raise row.error(name, str(e)) from None
        reference = nonblank(report, response)
        return [make_prompt("hh-rlhf", row, row.number, False, messages=history, reference=reference)]

    prompts = collect(report, rows, convert, spec.limit)  # a repeated prompt has the same id: counted, kept once
    report.counts["ends with an assistant turn"] = sum(p.messages[-1].role == "assistant" for p in prompts)
    return _finish(prompts, report)


# --------------------------------------------------------------------------------------------------- synthetic


def load_synthetic(spec: PromptSetSpec) -> LoadedPrompts:
    from evalharness import limits
    from evalharness.data import synthetic

    for name in ("path", "hub_id", "reference_path"):
        if getattr(spec, name) is not None:
            raise DataError(f"prompt set {spec.name!r}", None, name, "the synthetic task is generated; it reads no source")
    resolve_columns(spec, ())
    n = 64 if spec.limit is None else spec.limit
    limits.generated(f"prompt set {spec.name!r}: limit (the number of prompts generated)", n)
    # no file: the generator's parameters (its seed, items and prompt form) are what the prompts come from
    generator = content_hash(["prompt-source", "synthetic", 0, synthetic.ITEMS, synthetic.prompt_for("{item}")], 8)
    prompts = [make_prompt("synthetic", None, sid, True, messages=messages, meta={"source_hash": generator})
               for sid, messages in synthetic.prompts(n)]
    report = LoadReport(spec.name, "generated", rows_read=n)
    if spec.split is not None:
        report.notes.append(f"split {spec.split!r} not applied: the synthetic prompts are one set")
    return _finish(prompts, report)


# ------------------------------------------------------------------------------------------------- local files

_PROMPT_ROLES = ("prompt", "turns", "messages")


def _local(fmt: str) -> Callable[[PromptSetSpec], LoadedPrompts]:
    def loader(spec: PromptSetSpec) -> LoadedPrompts:
        if spec.path is None:
            raise DataError(f"prompt set {spec.name!r}", None, "path", f"the {fmt!r} preset reads a local file; pass path=")
        return _load_file(spec, fmt)

    loader.__name__ = f"load_{fmt}"
    loader.__doc__ = f"Prompts from a local {fmt} file with a column mapping (see the module docstring)."
    return loader


load_jsonl = _local("jsonl")
load_json = _local("json")


def _load_file(spec: PromptSetSpec, fmt: str) -> LoadedPrompts:
    columns = resolve_columns(spec, (*_PROMPT_ROLES, "id", "reference", "category"))
    mapped = [r for r in _PROMPT_ROLES if r in spec.columns]
    if len(mapped) > 1:
        raise DataError(f"prompt set {spec.name!r}", None, "columns",
                        f"maps {' and '.join(mapped)}; map one of {', '.join(_PROMPT_ROLES)}")
    report = LoadReport(spec.name, spec.name)
    rows = open_source(spec, report, fmt=fmt)
    first_row: dict[str, tuple[int, str]] = {}

    def convert(row: Row) -> list[Prompt]:
        record = row.mapping()
        roles = mapped or [r for r in _PROMPT_ROLES if columns[r] in record]
        if not roles:
            present = ", ".join(sorted(map(str, record))) or "none"
            wanted = ", ".join(columns[r] for r in _PROMPT_ROLES)
            raise row.error(columns["prompt"], f"missing column (expected one of {wanted}, or map one with "
                                               f"columns=; present: {present})")
        if len(roles) > 1:
            both = " and ".join(repr(columns[r]) for r in roles)
            raise row.error(columns[roles[1]], f"the row holds both {both}; map one with columns=")
        turns, messages = _prompt_of(row, roles[0], columns[roles[0]], get_column(row, columns[roles[0]]))
        source_id = row.number
        raw_id = get_column(row, columns["id"], required="id" in spec.columns)
        has_id = raw_id is not None and not is_missing(raw_id)
        if has_id:
            source_id = get_source_id(row, columns["id"], raw_id)
        meta: dict = {}
        raw_cat = get_column(row, columns["category"], required="category" in spec.columns)
        meta["category"] = None if is_missing(raw_cat) else get_optional_text(row, columns["category"], raw_cat)
        reference = _reference(row, columns["reference"], get_column(row, columns["reference"],
                                                                     required="reference" in spec.columns), meta)
        prompt = make_prompt("file", row, source_id, has_id, turns=turns, messages=messages,
                             reference=nonblank(report, reference), meta=meta)
        if has_id:
            check_unique_id(row, columns["id"], prompt, first_row)
        return [prompt]

    return _finish(collect(report, rows, convert, spec.limit), report)


def _prompt_of(row: Row, role: str, col: str, value) -> tuple[tuple[str, ...], tuple]:
    """(turns, ()) or ((), messages) from the row's prompt column."""
    is_message_list = isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    if role == "messages" or (role == "prompt" and is_message_list and any("role" in v for v in value)):
        messages = get_messages(row, col, value)
        if not messages or messages[-1].role != "user":
            last = messages[-1].role if messages else "nothing"
            raise row.error(col, f"a message-list prompt must end with a user message, got {last}")
        if not messages[-1].content.strip():
            raise row.error(f"{col}[{len(messages) - 1}].content", "empty prompt turn")
        return (), messages
    if role == "prompt" and not isinstance(value, (str, list)):
        raise row.error(col, f"expected a string, a list of turns or a list of messages, got {kind_of(value)}")
    return get_turns(row, col, value), ()


def _reference(row: Row, col: str, value, meta: dict) -> str | None:
    if is_missing(value) or value is None:
        return None
    if isinstance(value, list):
        turns = get_turns(row, col, value, allow_empty=True)
        meta["reference_turns"] = list(turns)
        return turns[0]
    if not isinstance(value, str):
        raise row.error(col, f"expected a string, a list of strings or null, got {kind_of(value)}")
    return get_text(row, col, value)
