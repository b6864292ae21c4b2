"""Load a dataset named by a ``DatasetSpec`` through the datasets registry.

``load(spec)`` looks ``spec.name`` up in the datasets registry (strict, with a "did you mean" hint) and calls the
entry with the spec. Every entry returns a ``Loaded(examples, report)`` (a named tuple, so ``examples, report =
load(spec)`` works): ``examples`` is a ``list[PreferencePair]`` or a ``list[ScoredSamples]``; ``report`` is a
``LoadReport`` that counts the rows read, the examples kept, and the rows skipped by reason, with the first few
skipped locations spelled out.

Rules every built-in loader keeps (see ``presets`` for the formats):

- Bad input raises ``DataError`` naming the file, the 1-based row and the field. For ``.jsonl`` the row is the line
  number; for ``.json`` and ``.parquet`` it is the record's 1-based position; for the hub it is the record's 1-based
  index in the split. Nothing is returned partially: a loader raises or returns everything.
- A row is skipped (never silently) only when it parses but carries no training signal: an empty or whitespace-only
  response when the spec's ``on_empty`` policy is ``"skip"``, a pair whose two sides are identical, or an exact
  duplicate of an earlier example (same id). Each skip is counted in the report under its reason.
- Example ids are content hashes (``evalharness.hashing.content_hash``) of the parsed example, so the same pair read
  from jsonl, parquet or the hub has the same id, and ids do not depend on column names, extra columns or row order.
- ``limit`` keeps the first ``limit`` examples and stops reading; rows past that point are not checked.
- A source with no records at all (an empty file, ``[]``) is a DataError; one whose rows were all skipped is not.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from evalharness import limits
from evalharness.data.readers import Row, kind_of, read_file, read_hub
from evalharness.data.types import DataError, Message, PreferencePair, PromptText, ScoredSamples
from evalharness.hashing import content_hash

ON_EMPTY = ("error", "skip")
ROLES = ("system", "user", "assistant")
_SHOWN_SKIPS = 20  # skipped locations spelled out in a report; the counts are always complete


@dataclass(frozen=True)
class DatasetSpec:
    """What to load.

    ``name`` is a datasets-registry preset. ``path`` is a local file; without one, presets that can reach the Hugging
    Face hub load ``hub_id`` (or the preset's own hub id) at ``split`` (or the preset's default split). ``columns`` maps
    the preset's roles (e.g. ``prompt``, ``chosen``) to column names in the file. ``limit`` keeps the first N examples.
    ``on_empty`` says what an empty response does: ``"error"`` raises, ``"skip"`` skips and counts the row; ``None``
    takes the preset's default (``"skip"`` for hh-rlhf, whose public files hold a few empty chosen responses;
    ``"error"`` elsewhere).
    """

    name: str
    path: str | None = None
    split: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    hub_id: str | None = None
    on_empty: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DatasetSpec.name must be a non-empty preset name, got {self.name!r}")
        if self.path is not None:
            if not isinstance(self.path, (str, Path)) or not str(self.path):
                raise ValueError(f"DatasetSpec.path must be a file path, got {self.path!r}")
            object.__setattr__(self, "path", str(self.path))
        for name in ("split", "hub_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"DatasetSpec.{name} must be a non-empty string or None, got {value!r}")
        if not isinstance(self.columns, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in self.columns.items()
        ):
            raise ValueError(f"DatasetSpec.columns must map role names to column names, got {self.columns!r}")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0
        ):
            raise ValueError(f"DatasetSpec.limit must be a non-negative int or None, got {self.limit!r}")
        if self.on_empty is not None and self.on_empty not in ON_EMPTY:
            raise ValueError(f"DatasetSpec.on_empty must be one of {ON_EMPTY} or None, got {self.on_empty!r}")


@dataclass
class LoadReport:
    """What a load read and what it left out, and why."""

    preset: str
    source: str
    rows_read: int = 0
    examples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_at: list[str] = field(default_factory=list)  # the first few "source:row field 'f': reason"
    counts: dict[str, int] = field(default_factory=dict)  # preset-specific facts (multi-turn prompts, x+ != x-, ...)
    limited: bool = False  # stopped at spec.limit before the end of the source
    notes: list[str] = field(default_factory=list)  # settings that did not apply, said out loud

    def skip(self, row: int | None, field_name: str | None, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_at) < _SHOWN_SKIPS:
            self.skipped_at.append(str(DataError(self.source, row, field_name, reason)))

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line, e.g. ``hh-rlhf (data.jsonl.gz): 2312 rows, 2308 examples, 4 skipped (empty response: 4)``."""
        line = f"{self.preset} ({self.source}): {self.rows_read} rows, {self.examples} examples"
        if self.skipped:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
            line += f", {self.n_skipped} skipped ({reasons})"
        if self.limited:
            line += ", stopped at the limit"
        return "; ".join([line, *self.notes])


class Loaded(NamedTuple):
    examples: list[PreferencePair] | list[ScoredSamples]
    report: LoadReport


def load(spec: DatasetSpec) -> Loaded:
    """Load ``spec`` through the datasets registry. Unknown names raise ``RegistryError`` with a "did you mean" hint."""
    return load_registered("datasets", spec, Loaded)


def load_registered(kind: str, spec, wrap):
    """Call the loader registered under ``spec.name`` in registry ``kind``; ``wrap`` is its (items, report) tuple.

    A plugin that returns a bare list still gets a report. ``NAME:key=value,…`` passes options to a loader that
    declares ``takes_options = True`` (it reads them from ``spec.name``); any other loader refuses them.
    """
    from evalharness.plugins import registry

    name, colon, _ = spec.name.partition(":")
    loader = registry(kind).get(name)
    if colon and not getattr(loader, "takes_options", False):
        raise DataError(f"dataset {spec.name!r}", None, None, f"{name!r} takes no options after ':'")
    result = loader(spec)
    if not isinstance(result, wrap):
        items = list(result)
        result = wrap(items, LoadReport(spec.name, spec.path or spec.hub_id or spec.name, len(items), len(items)))
    return result


# ---------------------------------------------------------------------------------------------------------- rows


class SkipRow(Exception):
    """Raised by a row converter for a row that is skipped and counted, not an error."""

    def __init__(self, field_name: str | None, reason: str):
        super().__init__(reason)
        self.field, self.reason = field_name, reason


def resolve_columns(spec: DatasetSpec, roles: Iterable[str]) -> dict[str, str]:
    """Role -> column name, the spec's mapping over the identity; an unknown role is an error with a hint."""
    roles = tuple(roles)
    for role in spec.columns:
        if role not in roles:
            hint = difflib.get_close_matches(role, roles, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            known = ", ".join(roles) or "none"
            raise DataError(f"dataset {spec.name!r}", None, "columns", f"unknown role {role!r}{did} (roles: {known})")
    return {role: spec.columns.get(role, role) for role in roles}


_MISSING = object()


def get_column(row: Row, column: str, required: bool = True) -> Any:
    """The value of ``column``; a missing required column names the columns present and the closest match."""
    record = row.mapping()
    if column in record:
        return record[column]
    if not required:
        return _MISSING
    present = sorted(str(k) for k in record)
    hint = difflib.get_close_matches(column, present, n=1, cutoff=0.6)
    did = f"; did you mean {hint[0]!r}?" if hint else ""
    raise row.error(column, f"missing column{did} (present: {', '.join(present) or 'none'})")


def is_missing(value: Any) -> bool:
    return value is _MISSING


def get_text(row: Row, field_name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise row.error(field_name, f"expected a string, got {kind_of(value)}")
    if len(value) > limits.max_text_chars():  # one runaway text costs minutes and gigabytes when tokenised
        raise row.error(field_name, f"text of {len(value):,} characters is over the limit of "
                                    f"{limits.max_text_chars():,} (raise it with {limits.MAX_TEXT_CHARS_ENV})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # a JSON "\ud800" escape decodes to a lone surrogate
        raise row.error(field_name, f"not valid UTF-8 text (unpaired surrogate at character {e.start + 1})") from None
    return value


def get_messages(row: Row, field_name: str, value: Any) -> tuple[Message, ...]:
    """A list of ``{role, content}`` objects, roles among system/user/assistant."""
    if not isinstance(value, list):
        raise row.error(field_name, f"expected a list of {{role, content}} messages, got {kind_of(value)}")
    out = []
    for i, m in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(m, dict):
            raise row.error(where, f"expected a {{role, content}} message, got {kind_of(m)}")
        for key in ("role", "content"):
            if key not in m:
                raise row.error(where, f"message has no {key!r} (keys: {', '.join(sorted(map(str, m))) or 'none'})")
        role = get_text(row, f"{where}.role", m["role"])
        if role not in ROLES:
            hint = difflib.get_close_matches(role, ROLES, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise row.error(f"{where}.role", f"unknown role {role!r}{did} (roles: {', '.join(ROLES)})")
        out.append(Message(role, get_text(row, f"{where}.content", m["content"])))
    return tuple(out)


def get_prompt(row: Row, field_name: str, value: Any) -> PromptText:
    """A prompt: a string used verbatim, or a list of messages."""
    if isinstance(value, str):
        return get_text(row, field_name, value)
    if isinstance(value, list):
        return get_messages(row, field_name, value)
    raise row.error(field_name, f"expected a string or a list of {{role, content}} messages, got {kind_of(value)}")


def get_response(row: Row, field_name: str, value: Any, on_empty: str) -> tuple[tuple[Message, ...], str]:
    """(context, response) from a string (no context) or a message list whose LAST message is the assistant's."""
    if isinstance(value, str):
        context, response = (), get_text(row, field_name, value)
    elif isinstance(value, list):
        messages = get_messages(row, field_name, value)
        if not messages or messages[-1].role != "assistant":
            last = messages[-1].role if messages else "nothing"
            raise row.error(field_name, f"a message-list response must end with an assistant message, got {last}")
        context, response = messages[:-1], messages[-1].content
    else:
        raise row.error(field_name, f"expected a string or a list of {{role, content}} messages, got {kind_of(value)}")
    check_nonempty(row, field_name, response, on_empty)
    return context, response


def check_nonempty(row: Row, field_name: str, text: str, on_empty: str) -> None:
    if text.strip():
        return
    if on_empty == "skip":
        raise SkipRow(field_name, "empty response")
    raise row.error(field_name, "empty response (on_empty='skip' skips and counts such rows)")


def get_number(row: Row, field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise row.error(field_name, f"expected a number, got {kind_of(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise row.error(field_name, "number too large for a float") from None
    if not math.isfinite(number):
        raise row.error(field_name, f"expected a finite number, got {number}")
    return number


def pair_id(x_pos: PromptText, y_pos: str, x_neg: PromptText, y_neg: str) -> str:
    return content_hash({"x_pos": x_pos, "y_pos": y_pos, "x_neg": x_neg, "y_neg": y_neg})


def collect(
    report: LoadReport, rows: Iterable[Row], convert: Callable[[Row], list], limit: int | None
) -> list[PreferencePair] | list[ScoredSamples]:
    """Run ``convert`` over ``rows``: count skips and duplicates, stop at ``limit``; DataErrors propagate."""
    examples: list = []
    seen: set[str] = set()
    if limit == 0:
        report.limited = True
        return examples
    for row in rows:
        report.rows_read += 1
        try:
            produced = convert(row)
        except SkipRow as skip:
            report.skip(row.number, skip.field, skip.reason)
            continue
        for example in produced:
            if example.id in seen:
                report.skip(row.number, None, "duplicate")
                continue
            seen.add(example.id)
            examples.append(example)
            if limit is not None and len(examples) >= limit:
                report.examples = len(examples)
                report.limited = True
                return examples
    if report.rows_read == 0:  # an empty file is a wrong path or a failed export, never a dataset to train on
        raise DataError(report.source, None, None, "holds no records")
    report.examples = len(examples)
    return examples


# ------------------------------------------------------------------------------------------------------- sources


def open_source(
    spec: DatasetSpec,
    report: LoadReport,
    *,
    hub_id: str | None = None,
    split: str | None = None,
    fmt: str | None = None,
    list_key: str | None = None,
) -> Iterator[Row]:
    """The rows of ``spec``: its local ``path`` if given, otherwise the hub (``spec.hub_id`` or the preset's
    ``hub_id``, at ``spec.split`` or the preset's ``split``). The hub is never tried when a path is given. Sets
    ``report.source``."""
    if spec.path is not None:
        report.source = spec.path
        if spec.split is not None:  # configs carry a split for every source; a local file is one split
            report.notes.append(f"split {spec.split!r} not applied: a local file is one split")
        return read_file(spec.path, fmt, list_key)
    hub = spec.hub_id or hub_id
    if hub is None:
        raise DataError(f"dataset {spec.name!r}", None, "path", "needs path= (a local file) or hub_id=")
    split = spec.split or split
    if split is None:
        raise DataError(f"dataset {spec.name!r}", None, "split", f"needs split= for hub dataset {hub!r}")
    report.source = f"hub:{hub}[{split}]"
    return read_hub(hub, split)
