"""Renderers: a ``Table`` (flat rows + display columns + meta) as a terminal table, Markdown, CSV, JSON or HTML.

CSV and JSON carry every field with full precision (``fields``), so they round-trip; the terminal table, Markdown and
HTML show the display ``columns`` and drop a column that is blank in every row. Markdown and HTML escape every text
that came from the store (model labels, run names, judge ids), so a label such as ``<script>…`` is shown, never run.
Every format but CSV writes control and bidi characters as visible escapes (``\\x1b``, ``\\u202e``; JSON as its own
``\\u001b``); CSV keeps text as it is, except that a cell a spreadsheet would run as a formula starts with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from evalharness.textsafe import csv_cell, csv_value, escape_controls, escape_json
from leaderboards.table import Table

FORMATS = ("table", "md", "csv", "json", "html")


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    """``fmt`` if it is one of ``allowed``; else the one-line user error (checked before any work is done)."""
    if fmt not in allowed:
        from leaderboards.query import LeaderboardError

        raise LeaderboardError(f"--format must be one of {', '.join(allowed)}, got {fmt!r}")
    return fmt


def render(table: Table, fmt: str) -> str:
    check_format(fmt)
    if fmt == "html":
        from leaderboards.html import render_html

        return render_html(table)
    return {"table": render_text, "md": render_md, "csv": render_csv, "json": render_json}[fmt](table)


# --------------------------------------------------------------------------------------------------- cells


def num(x: Any, digits: int = 2) -> str:
    """A number with fixed decimals, "" for None/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}f}"


def sig(x: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (metrics span 1e-3 .. 1e3), "" for None/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}g}"


def with_ci(value: str, low: str, high: str) -> str:
    return f"{value} [{low}, {high}]" if value and low and high else value


def text(x: Any) -> str:
    return "" if x is None else str(x)


# ---------------------------------------------------------------------------------------------- formats


def render_text(table: Table) -> str:
    """Aligned columns for a terminal: headers, a rule, one line per row, then meta and notes."""
    cols = table.visible()
    cells = [[_one_line(c.show(r)) for c in cols] for r in table.rows]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values):
        return "  ".join(v.ljust(w) if c.align == "left" else v.rjust(w)
                         for v, w, c in zip(values, widths, cols)).rstrip()

    out = [_one_line(table.title), line([_one_line(c.header) for c in cols]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    out += _meta_lines(table)
    return "\n".join(out) + "\n"


def render_md(table: Table) -> str:
    cols = table.visible()
    out = [f"### {md_escape(table.title)}", "", "| " + " | ".join(md_escape(c.header) for c in cols) + " |",
           "|" + "|".join("---:" if c.align == "right" else ":---" for c in cols) + "|"]
    out += ["| " + " | ".join(md_escape(c.show(r)) for c in cols) + " |" for r in table.rows]
    meta = _meta_lines(table)
    if meta:
        out += [""] + [f"- {md_escape(m.lstrip('# ').strip())}" for m in meta if m.strip()]
    return "\n".join(out) + "\n"


def render_csv(table: Table) -> str:
    """Every field of every row; numbers in Python's shortest round-trip form, None as an empty cell, text that a
    spreadsheet would run as a formula quoted (``csv_cell``; ``read_csv`` undoes it)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.fields)
    for r in table.rows:
        writer.writerow(["" if r.get(f) is None else csv_cell(r.get(f)) for f in table.fields])
    return buf.getvalue()


def render_json(table: Table) -> str:
    rows = [{f: _json_value(r.get(f)) for f in table.fields} for r in table.rows]
    return _json_dumps({"title": table.title, "meta": table.meta, "notes": table.notes, "rows": rows}) + "\n"


def read_csv(textual: str, text_fields: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    """Rows back from ``render_csv``: blanks as None, ``text_fields`` as strings, other cells parsed as numbers or
    booleans ("True"/"False") where they are ones."""
    rows = []
    for raw in csv.DictReader(io.StringIO(textual)):
        raw = {k: csv_value(v) for k, v in raw.items()}
        rows.append({k: (v or None) if k in text_fields else _parse_cell(v) for k, v in raw.items()})
    return rows


# --------------------------------------------------------------------------------------------------- escaping


def md_escape(s: str) -> str:
    """Text safe in a Markdown table cell: HTML-significant characters as entities, Markdown syntax backslashed,
    newlines as spaces (a cell is one line), control and bidi characters as visible escapes."""
    s = _one_line(s)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.translate(str.maketrans({c: "\\" + c for c in "\\`*_[]|#"}))


_WHITESPACE = "\t\n\r"


def _one_line(s: Any) -> str:
    """``s`` for one line of a terminal or a table cell: line breaks and tabs as spaces, every other control or bidi
    character as a visible escape."""
    s = escape_controls(s, keep=_WHITESPACE)
    return " ".join(s.split()) if ("\n" in s or "\r" in s or "\t" in s) else s


def _meta_lines(table: Table) -> list[str]:
    out = []
    shown = {k: v for k, v in table.meta.items() if v not in (None, "", [], {}) and k != "notes"}
    if shown:
        out.append("")
        out.append("  ".join(f"{_one_line(k)}: {_one_line(v)}" for k, v in shown.items()))
    for n in table.notes:
        out.append(f"# {_one_line(n)}")
    return out


def _json_dumps(obj: Any) -> str:
    return escape_json(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _parse_cell(v: str) -> Any:
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def render_many(tables: list[Table], fmt: str) -> str:
    """Several tables in one output: one after another (text, Markdown, CSV: separated by a blank line), or one
    JSON object ``{"tables": [...]}``."""
    check_format(fmt, ("table", "md", "csv", "json"))
    if fmt == "json":
        return _json_dumps({"tables": [json.loads(render_json(t)) for t in tables]}) + "\n"
    return "\n".join(render(t, fmt) for t in tables)
