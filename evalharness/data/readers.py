"""The rows of a local jsonl(.gz), json(.gz) or parquet file or of a hub split, each with where it came from.

Reading is bounded (``evalharness.limits.max_file_bytes``, decompressed bytes included) and every failure is one
``DataError`` naming the file and the 1-based row: for ``.jsonl`` the line number, for ``.json`` and ``.parquet`` the
record's position, for the hub the record's index in the split.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness import limits
from evalharness.data.types import DataError

FORMATS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".json": "json", ".json.gz": "json", ".parquet": "parquet"}


@dataclass
class Row:
    """One record and where it came from; ``error`` builds the DataError that names them."""

    source: str
    number: int
    record: Any

    def error(self, field_name: str | None, problem: str) -> DataError:
        return DataError(self.source, self.number, field_name, problem)

    def mapping(self) -> dict:
        if not isinstance(self.record, dict):
            raise self.error(None, f"expected a JSON object, got {kind_of(self.record)}")
        return self.record


def file_format(path: str) -> str:
    name = path.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise DataError(path, None, None, f"unknown file type; expected one of {', '.join(FORMATS)}")


def read_file(path: str, fmt: str | None = None, list_key: str | None = None) -> Iterator[Row]:
    """Rows of a local jsonl(.gz), json(.gz) or parquet file. Checks the path now; reads lazily."""
    fmt = fmt or file_format(path)
    p = Path(path)
    if not p.exists():
        raise DataError(path, None, None, "no such file")
    if not p.is_file():
        raise DataError(path, None, None, "not a file")
    size, cap = p.stat().st_size, limits.max_file_bytes()
    if size > cap:
        raise DataError(path, None, None, _too_big(cap, size))
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "json":
        return _read_json(path, list_key)
    if fmt == "parquet":
        return _read_parquet(path)
    raise ValueError(f"unknown format {fmt!r}")


def _open_bytes(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def _too_big(cap: int, size: int | None = None) -> str:
    what = f"file of {size:,} bytes is" if size is not None else "file holds more bytes (decompressed) than"
    return f"{what} over the limit of {cap:,} bytes (raise it with {limits.MAX_FILE_BYTES_ENV})"


def _read_jsonl(path: str) -> Iterator[Row]:
    number, total, cap = 0, 0, limits.max_file_bytes()
    try:
        with _open_bytes(path) as f:
            # A line is read with a bound: a gzip that inflates to more than the cap (or one endless line) stops here.
            while raw := f.readline(cap - total + 1):
                number += 1
                total += len(raw)
                if total > cap:
                    raise DataError(path, number, None, _too_big(cap))
                text = _decode(path, number, raw, first=number == 1)
                if not text.strip():
                    continue
                yield Row(path, number, _parse_json(path, number, text))
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, number + 1, None, f"corrupt gzip data ({type(e).__name__}: {_first_line(e)})") from None


def _read_json(path: str, list_key: str | None) -> Iterator[Row]:
    cap = limits.max_file_bytes()
    try:
        with _open_bytes(path) as f:
            raw = f.read(cap + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, None, None, f"corrupt gzip data ({type(e).__name__}: {_first_line(e)})") from None
    if len(raw) > cap:
        raise DataError(path, None, None, _too_big(cap))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"malformed JSON: {e.msg} (column {e.colno})") from None
    except (ValueError, RecursionError) as e:
        raise DataError(path, None, None, f"malformed JSON: {_first_line(e)}") from None
    if isinstance(data, dict) and list_key is not None and list_key in data:
        data = data[list_key]
    if not isinstance(data, list):
        wanted = "a JSON array of records" + (f" (or an object with a {list_key!r} array)" if list_key else "")
        raise DataError(path, None, None, f"expected {wanted}, got {kind_of(data)}")
    for number, record in enumerate(data, start=1):
        yield Row(path, number, record)


def _read_parquet(path: str) -> Iterator[Row]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        raise DataError(
            path, None, None, f"not a readable parquet file ({type(e).__name__}: {_first_line(e)})"
        ) from None
    for number, record in enumerate(records, start=1):
        yield Row(path, number, record)


def read_hub(hub_id: str, split: str) -> Iterator[Row]:
    """Rows of a hub dataset split. Any failure (offline, unknown id or split) is one DataError line, no traceback."""
    source = f"hub:{hub_id}[{split}]"
    try:
        import datasets

        dataset = datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # the hub client raises many types; the user needs one line and what to do
        raise DataError(
            source,
            None,
            None,
            f"could not load from the hub ({type(e).__name__}: {_first_line(e)}); pass path= to a local copy",
        ) from None
    for number, record in enumerate(dataset, start=1):
        yield Row(source, number, record)


def _decode(path: str, number: int, raw: bytes, first: bool) -> str:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            path, number, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
        ) from None


def _parse_json(path: str, number: int, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, number, None, f"malformed JSON: {e.msg} (column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # too-long integers, too-deep nesting
        raise DataError(path, number, None, f"malformed JSON: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def kind_of(value: Any) -> str:
    """How a JSON value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
