"""The built-in dataset presets, registered lazily through the same entry-point hook as plugins.

Each preset is a function ``(DatasetSpec) -> Loaded`` (see ``loaders`` for the shared rules: errors name file, row and
field; skips are counted; ids are content hashes; ``limit``). ``columns`` maps the roles named below to column names.

``hh-rlhf`` (pairs; roles ``chosen``, ``rejected``)
    Anthropic HH-RLHF rows ``{chosen, rejected}``, each a whole "\\n\\nHuman: …\\n\\nAssistant: …" dialogue, from a
    local ``.jsonl``/``.jsonl.gz`` or, with no path, the hub ``Anthropic/hh-rlhf`` (default split ``train``). The
    response is the text after the last "\\n\\nAssistant:"; the prompt before it becomes the message history (see
    ``hh``). ``x_pos`` and ``x_neg`` are parsed separately because a few rows differ. Empty responses are skipped and
    counted by default (``on_empty="skip"``): the public harmless-base test file has 4 whitespace-only chosen
    responses. Report counts: ``multi-turn`` (prompts with more than one human turn), ``x_pos != x_neg``.

``jsonl`` / ``json`` / ``parquet`` (pairs; roles ``prompt``, ``chosen``, ``rejected``, optional ``prompt_rejected``)
    A local file with a column mapping. A response is a string, or a list of ``{role, content}`` messages whose last
    message (which must be the assistant's) is the response and the rest its context. The prompt of each side is that
    context when there is one, otherwise ``prompt_rejected`` (x- only, when the column exists), otherwise ``prompt`` (a
    string, used verbatim, or a message list). ``prompt`` is required only when a response carries no context.
    ``hub`` reads the same layout from ``hub_id`` at ``split``.

``ultrafeedback-binarized`` (pairs; same roles)
    ``HuggingFaceH4/ultrafeedback_binarized`` (default split ``train_prefs``; also ``test_prefs``) or a local
    parquet/jsonl/json in that layout: ``prompt`` a string, ``chosen``/``rejected`` message lists ending with the
    assistant's answer. ``prompt_id``, ``score_chosen``, ``score_rejected`` are kept in ``meta`` when present.

``scored-samples`` (``ScoredSamples``; roles ``prompt``, ``completions``, ``rewards``)
    ``{prompt, completions: [K strings], rewards: [K numbers]}``; K >= 2 and the same on every row; rewards finite.

``synthetic`` / ``synthetic-scored``
    The project's own review task (``evalharness.data.synthetic``): generated, no file; ``limit`` is the size
    (default 512 pairs / 256 prompts with K=4). Options follow the name, ``synthetic:noise=0.2,length_weight=0.1``:
    ``noise`` (label flip probability; 0.5 makes y+ independent of the gold reward, the SFT data), ``near_duplicates``
    (share of pairs with x+ ≈ x-, y+ = y-), ``length_weight`` (word-count weight in the gold reward), ``seed``;
    ``synthetic-scored`` takes ``k``, ``length_weight`` and ``seed``. See ``docs/task.md``.

``causal-dialogue`` (pairs with ``x_pos != x_neg`` and ``y_pos == y_neg``)
    A CausalDialogue-style utterance DAG, one dialogue per record (one per line in ``.jsonl``; a ``.json`` file holds
    an array of dialogues or ``{"dialogues": [...]}``)::

        {"id": "d1",                      # optional, kept in meta
         "background": "…",               # optional; becomes a leading system message
         "utterances": [
            {"id": "u1", "speaker": "Ana", "text": "…", "parents": []},
            {"id": "u2", "speaker": "Bo",  "text": "…", "parents": ["u1"]},
            …]}

    ``id`` is a string or integer, unique in the dialogue; ``parents`` lists ids of earlier utterances this one
    replies to (several parents merge branches; the graph must be acyclic). Pairs follow seed 000 §6: for each
    utterance ``u`` (the response ``y``) and each parent ``p`` of ``u``, and each sibling ``s`` of ``p`` (another child
    of one of ``p``'s parents) that is not itself a parent or an ancestor of ``u``, one pair
    ``x+ = context(p), x- = context(s), y+ = y- = text(u)``: the same response after its true context and after a
    different branch. ``context(v)`` is the path from a root to ``v`` following each utterance's FIRST parent,
    rendered as messages ``"{speaker}: {text}"`` with role ``assistant`` for the responder's own lines and ``user``
    for everyone else's. Pairs whose two contexts render identically are skipped as ``identical contexts``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from evalharness.data.hh import HHFormatError, split_dialogue
from evalharness.data.loaders import (
    DatasetSpec,
    Loaded,
    LoadReport,
    SkipRow,
    check_nonempty,
    collect,
    get_column,
    get_number,
    get_prompt,
    get_response,
    get_text,
    is_missing,
    open_source,
    pair_id,
    resolve_columns,
)
from evalharness.data.readers import Row, kind_of
from evalharness.data.types import DataError, Message, PreferencePair, ScoredSamples
from evalharness.hashing import content_hash

PAIR_ROLES = ("prompt", "chosen", "rejected", "prompt_rejected")

# name -> (target, one-line summary)
BUILTIN_DATASETS: dict[str, tuple[str, str]] = {
    "hh-rlhf": ("evalharness.data.presets:load_hh_rlhf", "Anthropic HH-RLHF dialogues (local jsonl(.gz) or hub)"),
    "jsonl": ("evalharness.data.presets:load_jsonl", "preference pairs from a local .jsonl(.gz) with a column mapping"),
    "json": ("evalharness.data.presets:load_json", "preference pairs from a local .json array with a column mapping"),
    "parquet": (
        "evalharness.data.presets:load_parquet",
        "preference pairs from a local .parquet with a column mapping",
    ),
    "hub": ("evalharness.data.presets:load_hub", "preference pairs from a hub dataset (hub_id, split) with a mapping"),
    "ultrafeedback-binarized": (
        "evalharness.data.presets:load_ultrafeedback",
        "HuggingFaceH4/ultrafeedback_binarized (train_prefs/test_prefs) or a local copy",
    ),
    "scored-samples": ("evalharness.data.presets:load_scored_samples", "K completions per prompt with scalar rewards"),
    "causal-dialogue": (
        "evalharness.data.presets:load_causal_dialogue",
        "CausalDialogue-style utterance DAGs: same response, true vs sibling-branch context",
    ),
    "synthetic": ("evalharness.data.presets:load_synthetic", "the synthetic review task: oracle-labelled pairs"),
    "synthetic-scored": (
        "evalharness.data.presets:load_synthetic_scored",
        "the synthetic review task: K=4 responses per prompt with gold rewards",
    ),
}


def register(registry) -> None:
    """The entry-point hook for the built-in datasets."""
    for name, (target, summary) in BUILTIN_DATASETS.items():
        registry.add(name, target, summary=summary)


# ------------------------------------------------------------------------------------------------------ hh-rlhf


def load_hh_rlhf(spec: DatasetSpec) -> Loaded:
    columns = resolve_columns(spec, ("chosen", "rejected"))
    on_empty = spec.on_empty or "skip"
    report = LoadReport(spec.name, spec.name)
    rows = open_source(spec, report, hub_id="Anthropic/hh-rlhf", split="train")

    def convert(row: Row) -> list[PreferencePair]:
        sides = []
        for role in ("chosen", "rejected"):
            name = columns[role]
            text = get_text(row, name, get_column(row, name))
            try:
                history, response = split_dialogue(text)
            except HHFormatError as e:
                raise row.error(name, str(e)) from None
            sides.append((history, response, name))
        for _, response, name in sides:
            check_nonempty(row, name, response, on_empty)
        (x_pos, y_pos, _), (x_neg, y_neg, _) = sides
        _skip_identical(x_pos, y_pos, x_neg, y_neg)
        meta = {"source": row.source, "row": row.number}
        return [PreferencePair(x_pos, y_pos, x_neg, y_neg, pair_id(x_pos, y_pos, x_neg, y_neg), meta)]

    examples = collect(report, rows, convert, spec.limit)
    report.counts["multi-turn"] = sum(sum(m.role == "user" for m in p.x_pos) > 1 for p in examples)
    report.counts["x_pos != x_neg"] = sum(p.x_pos != p.x_neg for p in examples)
    return Loaded(examples, report)


# ------------------------------------------------------------------------------------------ generic pair files


def _pair_loader(spec: DatasetSpec, open_rows: Callable, meta_columns: tuple[str, ...] = ()) -> Loaded:
    columns = resolve_columns(spec, PAIR_ROLES)
    on_empty = spec.on_empty or "error"
    report = LoadReport(spec.name, spec.name)
    rows = open_rows(report)

    def convert(row: Row) -> list[PreferencePair]:
        ctx_pos, y_pos = get_response(row, columns["chosen"], get_column(row, columns["chosen"]), on_empty)
        ctx_neg, y_neg = get_response(row, columns["rejected"], get_column(row, columns["rejected"]), on_empty)
        # an explicitly mapped column must exist; the default "prompt" only when a response has no context
        raw_prompt = get_column(row, columns["prompt"], required="prompt" in spec.columns)
        raw_prompt_neg = get_column(row, columns["prompt_rejected"], required="prompt_rejected" in spec.columns)
        prompt = None if is_missing(raw_prompt) else get_prompt(row, columns["prompt"], raw_prompt)
        prompt_neg = None if is_missing(raw_prompt_neg) else get_prompt(row, columns["prompt_rejected"], raw_prompt_neg)
        x_pos = ctx_pos or prompt
        x_neg = ctx_neg or (prompt_neg if prompt_neg is not None else prompt)
        if x_pos is None or x_neg is None:
            get_column(row, columns["prompt"])  # raises the missing-column error with its hint
        _skip_identical(x_pos, y_pos, x_neg, y_neg)
        meta = {"source": row.source, "row": row.number}
        record = row.mapping()
        for name in meta_columns:
            if name in record and (record[name] is None or isinstance(record[name], (str, int, float, bool))):
                meta[name] = record[name]
        return [PreferencePair(x_pos, y_pos, x_neg, y_neg, pair_id(x_pos, y_pos, x_neg, y_neg), meta)]

    examples = collect(report, rows, convert, spec.limit)
    report.counts["x_pos != x_neg"] = sum(p.x_pos != p.x_neg for p in examples)
    return Loaded(examples, report)


def _local_pairs(fmt: str) -> Callable[[DatasetSpec], Loaded]:
    def loader(spec: DatasetSpec) -> Loaded:
        if spec.path is None:
            raise DataError(
                f"dataset {spec.name!r}", None, "path", f"the {fmt!r} preset reads a local file; pass path="
            )
        return _pair_loader(spec, lambda report: open_source(spec, report, fmt=fmt))

    loader.__name__ = f"load_{fmt}"
    loader.__doc__ = f"Preference pairs from a local {fmt} file with a column mapping (see the module docstring)."
    return loader


load_jsonl = _local_pairs("jsonl")
load_json = _local_pairs("json")
load_parquet = _local_pairs("parquet")


def load_hub(spec: DatasetSpec) -> Loaded:
    if spec.hub_id is None or spec.path is not None:
        raise DataError(f"dataset {spec.name!r}", None, "hub_id", "the 'hub' preset needs hub_id= and split=, no path")
    return _pair_loader(spec, lambda report: open_source(spec, report))


def load_ultrafeedback(spec: DatasetSpec) -> Loaded:
    return _pair_loader(
        spec,
        lambda report: open_source(spec, report, hub_id="HuggingFaceH4/ultrafeedback_binarized", split="train_prefs"),
        meta_columns=("prompt_id", "score_chosen", "score_rejected"),
    )


def _skip_identical(x_pos, y_pos, x_neg, y_neg) -> None:
    if x_pos == x_neg and y_pos == y_neg:  # no preference signal: every pairwise loss sees h = 0
        raise SkipRow(None, "chosen == rejected")


# ------------------------------------------------------------------------------------------------ scored samples


def load_scored_samples(spec: DatasetSpec) -> Loaded:
    columns = resolve_columns(spec, ("prompt", "completions", "rewards"))
    on_empty = spec.on_empty or "error"
    report = LoadReport(spec.name, spec.name)
    rows = open_source(spec, report)
    first: dict[str, int] = {}  # K and the row that set it

    def convert(row: Row) -> list[ScoredSamples]:
        prompt_col, comp_col, rew_col = columns["prompt"], columns["completions"], columns["rewards"]
        x = get_prompt(row, prompt_col, get_column(row, prompt_col))
        raw_comps, raw_rewards = get_column(row, comp_col), get_column(row, rew_col)
        for name, value in ((comp_col, raw_comps), (rew_col, raw_rewards)):
            if not isinstance(value, list):
                raise row.error(name, f"expected a list, got {kind_of(value)}")
        k = len(raw_comps)
        if k < 2:
            raise row.error(comp_col, f"needs at least 2 completions, got {k}")
        if len(raw_rewards) != k:
            raise row.error(rew_col, f"has {len(raw_rewards)} rewards for {k} completions")
        if "k" not in first:
            first.update(k=k, row=row.number)
        elif k != first["k"]:
            raise row.error(comp_col, f"has {k} completions; row {first['row']} has {first['k']} (K must be the same)")
        completions = tuple(get_text(row, f"{comp_col}[{i}]", c) for i, c in enumerate(raw_comps))
        rewards = tuple(get_number(row, f"{rew_col}[{i}]", r) for i, r in enumerate(raw_rewards))
        for i, c in enumerate(completions):
            check_nonempty(row, f"{comp_col}[{i}]", c, on_empty)
        sid = content_hash({"x": x, "completions": completions, "rewards": rewards})
        return [ScoredSamples(x, completions, rewards, sid, {"source": row.source, "row": row.number})]

    examples = collect(report, rows, convert, spec.limit)
    if "k" in first:
        report.counts["K"] = first["k"]
    return Loaded(examples, report)


# ----------------------------------------------------------------------------------------------------- synthetic


def load_synthetic(spec: DatasetSpec) -> Loaded:
    from evalharness.data import synthetic

    options = _task_options(spec, {"noise": 0.0, "near_duplicates": 0.0, "length_weight": 0.0, "seed": 0})
    return _synthetic(spec, lambda n: synthetic.pairs(n, **options), default_n=512)


def load_synthetic_scored(spec: DatasetSpec) -> Loaded:
    from evalharness.data import synthetic

    options = _task_options(spec, {"k": 4, "length_weight": 0.0, "seed": 0})
    return _synthetic(spec, lambda n: synthetic.scored(n, **options), default_n=256)


load_synthetic.takes_options = load_synthetic_scored.takes_options = True  # see loaders.load_registered

# Each knob's allowed range: a probability, a weight, a count of samples, a seed.
_OPTION_RANGES = {"noise": (0.0, 1.0), "near_duplicates": (0.0, 1.0), "length_weight": (-10.0, 10.0),
                  "k": (2, 64), "seed": (0, 2**31 - 1)}


def _task_options(spec: DatasetSpec, defaults: dict) -> dict:
    """The ``NAME:key=value,…`` options of a synthetic preset, typed like their defaults and range-checked."""
    _, _, text = spec.name.partition(":")
    options = dict(defaults)
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = (s.strip() for s in part.partition("="))
        key = key.replace("-", "_")
        if not eq or key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(defaults)}"
            raise DataError(f"dataset {spec.name!r}", None, None,
                            f"{part!r} is not key=value" if not eq else f"no option {key!r}; {hint}")
        kind = type(defaults[key])
        try:
            number = kind(value) if kind is float else int(value)
        except ValueError:
            raise DataError(f"dataset {spec.name!r}", None, key, f"{value!r} is not {kind.__name__}") from None
        low, high = _OPTION_RANGES[key]
        if not low <= number <= high:  # also refuses nan
            raise DataError(f"dataset {spec.name!r}", None, key, f"{value} is outside [{low}, {high}]")
        options[key] = number
    return options


def _synthetic(spec: DatasetSpec, make: Callable[[int], list], default_n: int) -> Loaded:
    """The project's own generated task: no file, no hub; ``limit`` is the number of examples (seed 0)."""
    for name in ("path", "hub_id"):
        if getattr(spec, name) is not None:
            raise DataError(f"dataset {spec.name!r}", None, name, "the synthetic task is generated; it reads no source")
    resolve_columns(spec, ())
    from evalharness import limits

    n = default_n if spec.limit is None else spec.limit
    limits.generated(f"dataset {spec.name!r}: limit (the number of examples generated)", n)
    examples = make(n)
    report = LoadReport(spec.name, "generated", rows_read=n, examples=len(examples))
    if spec.split is not None:
        report.notes.append(f"split {spec.split!r} not applied: use split_examples for a held-out part")
    return Loaded(examples, report)


# ----------------------------------------------------------------------------------------------- causal-dialogue


def load_causal_dialogue(spec: DatasetSpec) -> Loaded:
    resolve_columns(spec, ())  # the schema is fixed; a column mapping is an error
    on_empty = spec.on_empty or "error"
    report = LoadReport(spec.name, spec.name)
    rows = open_source(spec, report, list_key="dialogues")

    def convert(row: Row) -> list[PreferencePair]:
        dialogue = _parse_dialogue(row)
        report.count("dialogues")
        report.count("utterances", len(dialogue.order))
        pairs = []
        for uid in dialogue.order:
            u = dialogue.nodes[uid]
            field_name = f"utterances[{u['index']}].text"
            negatives = dialogue.negatives(uid)
            if not negatives:
                continue
            try:
                check_nonempty(row, field_name, u["text"], on_empty)
            except SkipRow as skip:
                report.skip(row.number, skip.field, skip.reason)
                continue
            for parent, sibling in negatives:
                x_pos, x_neg = dialogue.context(parent, u["speaker"]), dialogue.context(sibling, u["speaker"])
                if x_pos == x_neg:
                    report.skip(row.number, field_name, "identical contexts")
                    continue
                y = u["text"]
                meta = {
                    "source": row.source,
                    "row": row.number,
                    "dialogue": dialogue.id,
                    "response": uid,
                    "parent": parent,
                    "negative": sibling,
                }
                pairs.append(PreferencePair(x_pos, y, x_neg, y, pair_id(x_pos, y, x_neg, y), meta))
        return pairs

    return Loaded(collect(report, rows, convert, spec.limit), report)


class _Dialogue:
    def __init__(self, id_, background, nodes: dict, order: list):
        self.id, self.background, self.nodes, self.order = id_, background, nodes, order
        self.children: dict = {uid: [] for uid in order}
        for uid in order:
            for p in nodes[uid]["parents"]:
                self.children[p].append(uid)
        self._ancestors: dict = {}

    def ancestors(self, uid) -> set:
        if uid not in self._ancestors:
            out: set = set()
            stack = list(self.nodes[uid]["parents"])
            while stack:
                v = stack.pop()
                if v not in out:
                    out.add(v)
                    stack.extend(self.nodes[v]["parents"])
            self._ancestors[uid] = out
        return self._ancestors[uid]

    def negatives(self, uid) -> list[tuple]:
        """(true parent, sibling branch) for response ``uid``, in file order."""
        parents = self.nodes[uid]["parents"]
        out = []
        for p in parents:
            siblings = []
            for grand in self.nodes[p]["parents"]:
                siblings.extend(s for s in self.children[grand] if s not in siblings)
            siblings.sort(key=lambda s: self.nodes[s]["index"])
            for s in siblings:
                if s == p or s == uid or s in parents or s in self.ancestors(uid) or uid in self.ancestors(s):
                    continue
                out.append((p, s))
        return out

    def context(self, uid, responder: str) -> tuple[Message, ...]:
        path = [uid]
        while self.nodes[path[-1]]["parents"]:
            path.append(self.nodes[path[-1]]["parents"][0])
        messages = [Message("system", self.background)] if self.background else []
        for v in reversed(path):
            node = self.nodes[v]
            role = "assistant" if node["speaker"] == responder else "user"
            messages.append(Message(role, f"{node['speaker']}: {node['text']}"))
        return tuple(messages)


def _parse_dialogue(row: Row) -> _Dialogue:
    record = row.mapping()
    id_ = record.get("id")
    if id_ is not None and (isinstance(id_, bool) or not isinstance(id_, (str, int))):
        raise row.error("id", f"expected a string or integer dialogue id, got {type(id_).__name__}")
    background = record.get("background")
    if background is not None:
        background = get_text(row, "background", background)
    utterances = get_column(row, "utterances")
    if not isinstance(utterances, list) or not utterances:
        raise row.error("utterances", "expected a non-empty list of utterances")
    nodes: dict = {}
    order: list = []
    for i, u in enumerate(utterances):
        where = f"utterances[{i}]"
        if not isinstance(u, dict):
            raise row.error(where, "expected an utterance object {id, speaker, text, parents}")
        for key in ("id", "speaker", "text", "parents"):
            if key not in u:
                raise row.error(where, f"utterance has no {key!r}")
        uid = u["id"]
        if isinstance(uid, bool) or not isinstance(uid, (str, int)):
            raise row.error(f"{where}.id", "expected a string or integer id")
        if uid in nodes:
            raise row.error(f"{where}.id", f"duplicate utterance id {uid!r}")
        speaker = get_text(row, f"{where}.speaker", u["speaker"])
        if not speaker.strip():
            raise row.error(f"{where}.speaker", "empty speaker")
        parents = u["parents"]
        if not isinstance(parents, list) or any(isinstance(p, bool) or not isinstance(p, (str, int)) for p in parents):
            raise row.error(f"{where}.parents", "expected a list of utterance ids")
        if len(set(parents)) != len(parents):
            raise row.error(f"{where}.parents", "lists a parent twice")
        nodes[uid] = {
            "index": i,
            "speaker": speaker,
            "text": get_text(row, f"{where}.text", u["text"]),
            "parents": parents,
        }
        order.append(uid)
    for uid in order:
        node = nodes[uid]
        for p in node["parents"]:
            if p not in nodes:
                known = [str(k) for k in order]
                hint = difflib.get_close_matches(str(p), known, n=1)
                did = f"; did you mean {hint[0]!r}?" if hint else ""
                raise row.error(f"utterances[{node['index']}].parents", f"unknown utterance id {p!r}{did}")
    _check_acyclic(row, nodes, order)
    return _Dialogue(id_, background, nodes, order)


def _check_acyclic(row: Row, nodes: dict, order: list) -> None:
    state: dict = {}  # uid -> 1 while on the stack, 2 when done
    for start in order:
        if start in state:
            continue
        stack = [(start, iter(nodes[start]["parents"]))]
        state[start] = 1
        while stack:
            uid, parents = stack[-1]
            for p in parents:
                if state.get(p) == 1:
                    raise row.error(f"utterances[{nodes[uid]['index']}].parents", f"cycle through utterance {p!r}")
                if p not in state:
                    state[p] = 1
                    stack.append((p, iter(nodes[p]["parents"])))
                    break
            else:
                state[uid] = 2
                stack.pop()
