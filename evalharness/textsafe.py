"""Text from the store made safe to show: on a terminal, in a spreadsheet.

Run names, model labels, prompts and model text come from users, datasets and models. Printed raw, an escape sequence
in a label can rewrite the terminal (colours, cursor moves, a fake prompt, a window title) and a bidi override can
make a line read differently from what it holds. Such characters are written as visible escapes (``\\x1b``,
``\\u202e``), never dropped, so a reader sees that something is there. A CSV cell that starts like a formula is
opened as one by spreadsheet tools; it gets the single-quote prefix they honour as "this is text".
"""

from __future__ import annotations

import re

# Bidirectional controls: embeddings and overrides (U+202A-U+202E), isolates (U+2066-U+2069), the marks (U+200E,
# U+200F, U+061C); U+2028/U+2029 end a line in some terminals and editors.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible(c: str) -> str:
    return _SHORT.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


# C0 controls, DEL and C1 controls (U+0080-U+009F: a terminal may read U+009B as the start of an escape sequence).
_UNSAFE = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))] + list(_BIDI)
_ESCAPES = {ord(c): _visible(c) for c in _UNSAFE}


def escape_controls(text: object, keep: str = "") -> str:
    r"""``text`` with every control and bidi character written as a visible escape, but those in ``keep``.

    >>> escape_controls("run\x1b[2J\u202eevil\n")
    'run\\x1b[2J\\u202eevil\\n'
    >>> escape_controls("dpo β=0.1 ✓\tok\n", keep="\n")
    'dpo β=0.1 ✓\\tok\n'
    """
    return str(text).translate(_escapes(keep))


def escape_lines(text: object) -> str:
    """As ``escape_controls`` but newlines stay: for a block of lines (a rendered table) printed at once."""
    return escape_controls(text, keep="\n")


_BY_KEEP: dict[str, dict[int, str]] = {"": _ESCAPES}


def _escapes(keep: str) -> dict[int, str]:
    if keep not in _BY_KEEP:
        _BY_KEEP[keep] = {k: v for k, v in _ESCAPES.items() if chr(k) not in keep}
    return _BY_KEEP[keep]


def escape_json(dumped: str) -> str:
    r"""JSON text (as ``json.dumps(..., ensure_ascii=False)`` writes it) with the control and bidi characters json
    leaves raw (DEL, C1, bidi) as ``\uXXXX``: the same value to any parser, harmless when printed.

    >>> escape_json('{"label": "a\u202eb"}')
    '{"label": "a\\u202eb"}'
    """
    return dumped.translate(_JSON_ESCAPES)


# json.dumps escapes C0 controls itself; outside strings JSON has no character above U+007E.
_JSON_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in _UNSAFE if ord(c) >= 0x7F}


# ------------------------------------------------------------------------------------------------- spreadsheets

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain number ("-0.5", "+3", "1e-3") is read as that number by every spreadsheet, never as a formula.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _formula_like(s: str) -> bool:
    rest = s.lstrip("'")
    return rest.startswith(_FORMULA_START) and not _NUMBER.fullmatch(rest)


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text, never runs: a string starting with ``= + - @``, tab or CR gets a
    leading ``'``. Numbers (``-0.5`` as a float) are left as numbers. A string that already starts with quotes before
    such a character gets one more, so ``csv_value`` restores every string exactly.

    >>> csv_cell('=HYPERLINK("http://x","y")'), csv_cell(-0.5), csv_cell("-0.5"), csv_cell("'=1")
    ('\\'=HYPERLINK("http://x","y")', -0.5, '-0.5', "''=1")
    """
    return "'" + value if isinstance(value, str) and _formula_like(value) else value


def csv_value(cell: str) -> str:
    """The string ``csv_cell`` was given, from the cell it made.

    >>> [csv_value(csv_cell(s)) for s in ("=1+1", "'=1", "''@x", "'plain", "-2")]
    ['=1+1', "'=1", "''@x", "'plain", '-2']
    """
    return cell[1:] if cell.startswith("'") and _formula_like(cell) else cell
