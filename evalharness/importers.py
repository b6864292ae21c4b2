"""Import third-party model outputs and judge annotations into the store, keyed by content so re-imports add nothing.

AlpacaEval (``import_alpaca_eval``) publishes, per model, ``<model>/model_outputs.json`` (``[{instruction, output,
generator, dataset}]``) and, per annotator, ``<model>/<annotator>/annotations.json`` (``[{instruction, output_1,
generator_1, output_2, generator_2, preference, ...}]``; ``output_1`` is the baseline's answer, ``output_2`` the
model's). They become:

- ``prompts`` of prompt set ``alpaca-eval`` with the ids the ``alpaca-eval`` prompt-set loader gives (a hash of the
  instruction), so imported models can be judged against models sampled by ``evalharness generate``;
- ``generations`` of checkpoint ``alpaca-eval:<generator>`` (label = generator, backend ``import``): each model's
  outputs file at sample index 0, and, where an annotation shows a text that differs from that file (AlpacaEval
  re-generated some baselines), that judged text at sample index 1 (``sampling = {"source": "annotations"}``);
- ``judgments`` by judge ``alpaca-eval:<annotator>`` (version ``imported``), one order per pair: A = generator_2 (the
  rated model), B = generator_1 (the baseline), output_1 shown first, so ``swapped`` is true. ``preference`` 1 ->
  ``first``, 2 -> ``second``, 1.5 or the legacy 0 -> ``tie``, a value strictly between 1 and 2 (a weighted annotator)
  -> the nearer side with ``probability`` = P(output_1 preferred) = 2 - preference, and null/NaN -> ``unparsed``
  (AlpacaEval drops those; the leaderboard leaves them out and counts them).

AlpacaEval annotates each (instruction, model, baseline) once per annotator, so a second annotation of the same pair
(another annotation set of the same model, baseline and annotator, in this import or already in the store) would read
as a second order of that pair: it is refused, naming both. The imported judges carry AlpacaEval's own counting
(``native_ties``): a board of them averages preferences unless told otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness import limits
from evalharness.data.prompts import make_prompt
from evalharness.data.types import DataError
from evalharness.hashing import content_hash
from evalharness.imported import JUDGE_PREFIX, JUDGE_VERSION
from evalharness.store import Store, now
from evalharness.store_rows import GenerationRecord, JudgmentRecord, PromptRecord

PROMPT_SET = "alpaca-eval"
OUTPUTS = "model_outputs.json"
ANNOTATIONS = "annotations.json"


@dataclass
class ImportReport:
    models: list[str] = field(default_factory=list)  # models with an outputs file
    annotators: list[str] = field(default_factory=list)
    new: dict[str, int] = field(default_factory=dict)  # table -> rows added
    total: dict[str, int] = field(default_factory=dict)  # table -> rows read
    counts: dict[str, int] = field(default_factory=dict)  # draws, unparsed, empty outputs, judged texts not in outputs
    rated: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (annotator, model, baseline) -> annotations

    def lines(self) -> list[str]:
        tables = ", ".join(f"{self.total.get(t, 0)} {t} ({self.new.get(t, 0)} new)"
                           for t in ("prompts", "generations", "judgments"))
        out = [f"alpaca-eval: outputs of {len(self.models)} models ({', '.join(self.models) or 'none'})"]
        for annotator in self.annotators:
            sets = [f"{m} vs {b} ({n} annotations)" for (a, m, b), n in sorted(self.rated.items()) if a == annotator]
            out.append(f"annotator {annotator}: rated " + ", ".join(sets) if sets else
                       f"annotator {annotator}: no annotations")
        out.append(tables)
        if self.counts:
            out.append(", ".join(f"{v} {k}" for k, v in sorted(self.counts.items())))
        return out


def import_alpaca_eval(directory: str | Path, store: Store, annotator: str | None = None) -> ImportReport:
    """Import every ``<model>/model_outputs.json`` under ``directory`` and the annotations of ``annotator`` (default:
    every annotator directory found). Everything is read and checked before one transaction writes it."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(str(root), None, None, "no such directory")
    report = ImportReport()
    batch = _Batch()
    outputs = sorted(p for p in root.glob(f"*/{OUTPUTS}"))
    annotations = sorted(p for p in root.glob(f"*/*/{ANNOTATIONS}") if annotator in (None, p.parent.name))
    if not outputs and not annotations:
        raise DataError(str(root), None, None, f"holds no <model>/{OUTPUTS} and no <model>/<annotator>/{ANNOTATIONS}")
    if annotator is not None and not annotations:
        raise DataError(str(root), None, None, f"holds no <model>/{annotator}/{ANNOTATIONS}")
    for path in outputs:
        for i, rec in enumerate(_read_records(path), start=1):
            row = _Row(path, i, rec)
            instruction = row.text("instruction", nonempty=True)
            generator = row.text("generator", nonempty=True) if "generator" in rec else path.parent.name
            output = row.text("output")
            pid = batch.prompt(instruction, i, rec.get("dataset"))
            batch.generation(generator, pid, output, 0, "outputs")
            report.counts["empty outputs"] = report.counts.get("empty outputs", 0) + (not output.strip())
            if generator not in report.models:
                report.models.append(generator)
    for path in annotations:
        name = path.parent.name
        if name not in report.annotators:
            report.annotators.append(name)
        for i, rec in enumerate(_read_records(path), start=1):
            _annotation(_Row(path, i, rec), name, batch, report)
    _check_stored_pairs(store, batch)
    _write(store, batch, report)
    return report


# ------------------------------------------------------------------------------------------------- reading


def _read_records(path: Path) -> list[dict[str, Any]]:
    size, cap = path.stat().st_size, limits.max_file_bytes()
    if size > cap:  # the data readers' limit: a runaway file is refused before it is read into memory
        raise DataError(str(path), None, None, f"file of {size:,} bytes is over the limit of {cap:,} bytes (raise it "
                                               f"with {limits.MAX_FILE_BYTES_ENV})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(str(path), None, None, f"not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(str(path), e.lineno, None, f"not valid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, list):
        raise DataError(str(path), None, None, f"expected a JSON array of records, got {type(data).__name__}")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise DataError(str(path), i, None, f"record {i} is a {type(rec).__name__}, expected an object")
    return data


@dataclass
class _Row:
    """One record; errors name the file, the 1-based record number (as the row) and the field."""

    path: Path
    number: int
    record: dict[str, Any]

    def error(self, name: str | None, problem: str) -> DataError:
        return DataError(str(self.path), self.number, name, problem)

    def text(self, name: str, nonempty: bool = False) -> str:
        if name not in self.record:
            present = ", ".join(sorted(map(str, self.record))) or "none"
            raise self.error(name, f"missing field (present: {present})")
        value = self.record[name]
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {type(value).__name__}")
        if len(value) > limits.max_text_chars():
            raise self.error(name, f"text of {len(value):,} characters is over the limit of "
                                   f"{limits.max_text_chars():,} (raise it with {limits.MAX_TEXT_CHARS_ENV})")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise self.error(name, f"not valid UTF-8 text (unpaired surrogate at character {e.start + 1})") from None
        if nonempty and not value.strip():
            raise self.error(name, "empty")
        return value

    def number_field(self, name: str) -> float | None:
        value = self.record.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return None
        return float(value)


def preference_verdict(row: _Row) -> tuple[str, float | None]:
    """(verdict in positions as shown, P(first shown preferred)) from AlpacaEval's ``preference``.

    >>> r = lambda p: preference_verdict(_Row(Path("a.json"), 1, {"preference": p}))
    >>> r(1), r(2), r(1.5), r(0), r(1.25), r(None)
    (('first', 1.0), ('second', 0.0), ('tie', 0.5), ('tie', 0.5), ('first', 0.75), ('unparsed', None))
    """
    if "preference" not in row.record:
        raise row.error("preference", "missing field")
    pref = row.record["preference"]
    if pref is None or (isinstance(pref, float) and math.isnan(pref)):
        return "unparsed", None
    if isinstance(pref, bool) or not isinstance(pref, (int, float)):
        raise row.error("preference", f"expected a number (1, 2, 1.5 or 0 for a draw), got {pref!r}")
    if pref == 0 or pref == 1.5:
        return "tie", 0.5
    if not 1.0 <= pref <= 2.0:
        raise row.error("preference", f"{pref!r} is outside [1, 2] (1 = output_1, 2 = output_2, 1.5 or 0 = draw)")
    return ("first" if pref < 1.5 else "second"), 2.0 - float(pref)


def _annotation(row: _Row, annotator: str, batch: _Batch, report: ImportReport) -> None:
    instruction = row.text("instruction", nonempty=True)
    gen_1, gen_2 = row.text("generator_1", nonempty=True), row.text("generator_2", nonempty=True)
    out_1, out_2 = row.text("output_1"), row.text("output_2")
    if gen_1 == gen_2:
        raise row.error("generator_2", f"compares {gen_1!r} with itself")
    verdict, probability = preference_verdict(row)
    pid = batch.prompt(instruction, None, row.record.get("dataset"))
    first = batch.annotated_generation(gen_1, pid, out_1, report)
    second = batch.annotated_generation(gen_2, pid, out_2, report)
    judge = f"{JUDGE_PREFIX}{annotator}"
    a, b = _key(gen_2), _key(gen_1)
    ident = [judge, JUDGE_VERSION, ""]
    pair_id = content_hash(["pair", *ident, pid, 1, 0, a, b])
    cache_key = content_hash(["judgment", *ident, batch.messages[pid], None, out_1, out_2])
    raw = row.record.get("raw_completion")
    raw = raw if isinstance(raw, str) else json.dumps({"preference": row.record.get("preference")})
    judgment_id = content_hash(["judgment-row", cache_key, first, second])
    seen = batch.pairs.get(pair_id)
    if seen is not None and seen[:3] != (judgment_id, verdict, probability):
        raise row.error(None, f"a second annotation of {gen_2!r} vs {gen_1!r} by {annotator!r} on this instruction "
                              f"(the first: {seen[3]}); AlpacaEval annotates each pair once, so two annotation "
                              "sets of one model, baseline and annotator would read as two orders: import one")
    if seen is None:
        batch.pairs[pair_id] = (judgment_id, verdict, probability, f"{row.path}:{row.number}")
        report.rated[(annotator, gen_2, gen_1)] = report.rated.get((annotator, gen_2, gen_1), 0) + 1
    batch.judgments[judgment_id] = JudgmentRecord(
        judgment_id, cache_key, judge, JUDGE_VERSION, "", pid, 1, 0, pair_id, a, b, True, first, second, verdict, probability, raw,
        row.number_field("time_per_example"), None, None, row.number_field("price_per_example"), None, now())
    batch.judged_models.add((gen_1, gen_2))
    if verdict in ("tie", "unparsed"):
        label = "draws" if verdict == "tie" else "unparsed preferences"
        report.counts[label] = report.counts.get(label, 0) + 1


def _key(generator: str) -> str:
    return f"alpaca-eval:{generator}"


@dataclass
class _Batch:
    """Everything one import writes, keyed by content id (a second sighting of the same content is the same row)."""

    prompts: dict[str, PromptRecord] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # prompt id -> messages JSON (as the prompts row holds)
    generations: dict[str, GenerationRecord] = field(default_factory=dict)
    outputs_text: dict[tuple[str, str], str] = field(default_factory=dict)  # (generator, prompt id) -> generation id
    judgments: dict[str, JudgmentRecord] = field(default_factory=dict)
    judged_models: set[tuple[str, str]] = field(default_factory=set)
    # pair id -> (judgment id, verdict, probability, "file:record"): the same texts with another verdict are a clash
    pairs: dict[str, tuple[str, str, float | None, str]] = field(default_factory=dict)

    def prompt(self, instruction: str, number: int | None, dataset: Any) -> str:
        p = make_prompt(PROMPT_SET, None, number, False, turns=(instruction,),
                        meta={"category": dataset if isinstance(dataset, str) else None})
        if p.id not in self.prompts:
            messages = json.dumps([m._asdict() for m in p.messages])
            self.messages[p.id] = messages
            self.prompts[p.id] = PromptRecord(p.id, PROMPT_SET, str(number or ""), messages, None, json.dumps(p.meta, default=str))
        return p.id

    def generation(self, generator: str, pid: str, text: str, index: int, source: str) -> str:
        key = _key(generator)
        gid = content_hash(["import-generation", PROMPT_SET, key, pid, text])
        if index == 0:
            self.outputs_text.setdefault((generator, pid), gid)
        if gid not in self.generations:
            self.generations[gid] = GenerationRecord(
                gid, key, generator, None, pid, 1, index, json.dumps({"source": source}), None, "import", None, None,
                text, None, None, None, None, None, None, created_at=now())
        return gid

    def annotated_generation(self, generator: str, pid: str, text: str, report: ImportReport) -> str:
        gid = content_hash(["import-generation", PROMPT_SET, _key(generator), pid, text])
        if gid in self.generations:
            return gid
        if (generator, pid) in self.outputs_text:  # the outputs file holds another text: keep both, count it
            report.counts["judged texts not in the outputs file"] = (
                report.counts.get("judged texts not in the outputs file", 0) + 1)
        return self.generation(generator, pid, text, 1, "annotations")


def _check_stored_pairs(store: Store, batch: _Batch) -> None:
    """Refuse an annotation whose pair the store already holds under another judgment or verdict (a different
    annotation set of the same model, baseline and annotator imported earlier): it would become a second order of
    that pair, or be silently dropped as already stored."""
    if not batch.pairs or not Path(store.path).exists():
        return
    with store.connect(read_only=True) as con:
        if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'judgments'").fetchone():
            return
        clash = con.execute(
            "SELECT j.pair_id, j.model_a, j.model_b, j.judge FROM judgments j JOIN (SELECT unnest(?) AS p, "
            "unnest(?) AS k, unnest(?) AS v, unnest(?) AS pr) w ON w.p = j.pair_id "
            "WHERE j.judgment_id <> w.k OR j.verdict <> w.v OR j.probability IS DISTINCT FROM w.pr LIMIT 1",
            [list(batch.pairs), *([v[i] for v in batch.pairs.values()] for i in range(3))]).fetchone()
    if clash:
        path, _, number = batch.pairs[clash[0]][3].rpartition(":")
        raise DataError(path, int(number), None,
                        f"the store already holds another annotation of {clash[1].removeprefix(JUDGE_PREFIX)!r} vs "
                        f"{clash[2].removeprefix(JUDGE_PREFIX)!r} by {clash[3].removeprefix(JUDGE_PREFIX)!r} on "
                        "this instruction (another annotation set); AlpacaEval annotates each pair once, so it "
                        "would read as a second order: import into another store")


def _write(store: Store, batch: _Batch, report: ImportReport) -> None:
    tables = {"prompts": batch.prompts, "generations": batch.generations, "judgments": batch.judgments}
    added = store.insert_rows(*(list(rows.values()) for rows in tables.values()))
    for table, rows in tables.items():
        report.total[table], report.new[table] = len(rows), added.get(table, 0)
