"""One self-contained HTML page for a ``Table``: inline CSS, a small inline script for click-to-sort, nothing fetched.

Every text from the store is escaped. A Content-Security-Policy allows only this page's own script (by its hash)
and no other resource, so even text that slipped past escaping could not run or load anything. The script marks
``<html data-sortable="ready">`` when it has run, and ``#sort=KEY`` (or ``#sort=-KEY``) in the URL sorts on load.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from typing import Any

from evalharness.textsafe import escape_controls
from leaderboards.table import Table


def html_escape(s: Any) -> str:
    """Text safe in HTML, as an element's text or a quoted attribute; control and bidi characters as visible escapes
    (an entity would still reorder the line)."""
    return html.escape(escape_controls("" if s is None else s, keep=_WHITESPACE), quote=True)


_WHITESPACE = "\t\n\r"

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d2329; }
h1 { font-size: 20px; margin: 0 0 12px; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e3e6ea; white-space: nowrap; }
th { background: #f4f6f8; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; }
th[data-type="num"] { text-align: right; } th[data-type="text"] { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.baseline td { color: #5b6470; font-style: italic; }
tbody tr:hover { background: #f9fafb; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 16px 0 0; color: #3b444f; }
dt { font-weight: 600; } dd { margin: 0; }
ul.notes { color: #5b6470; margin-top: 12px; padding-left: 18px; }
"""

SCRIPT = """
(function () {
  var table = document.getElementById("board");
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function value(row, i, numeric) {
    var v = row.cells[i].getAttribute("data-v");
    if (v === null || v === "") return null;
    if (numeric) { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v.toLowerCase();
  }
  function sortBy(i, dir) {
    var numeric = heads[i].getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = value(r1, i, numeric), b = value(r2, i, numeric);
      if (a === null || b === null) return (a === null) - (b === null);
      return (a < b ? -1 : a > b ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    heads[i].setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }
  heads.forEach(function (h, i) {
    h.addEventListener("click", function () {
      var now = h.getAttribute("aria-sort");
      var first = h.getAttribute("data-type") === "num" ? -1 : 1;
      sortBy(i, now === null ? first : (now === "ascending" ? -1 : 1));
    });
  });
  var m = /^#sort=(-?)([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (m) {
    heads.forEach(function (h, i) { if (h.getAttribute("data-key") === m[2]) sortBy(i, m[1] ? -1 : 1); });
  }
  document.documentElement.setAttribute("data-sortable", "ready");
})();
"""


def render_html(table: Table) -> str:
    cols = table.visible()
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    policy = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    head = "".join(
        f'<th data-key="{html_escape(_key(c.sort_key or c.header))}" '
        f'data-type="{"num" if _numeric(table, c.sort_key) else "text"}">{html_escape(c.header)}</th>'
        for c in cols)
    body = []
    for r in table.rows:
        cells = []
        for c in cols:
            raw = r.get(c.sort_key) if c.sort_key else None
            shown = c.show(r)
            sort_value = shown if raw is None or (isinstance(raw, float) and not math.isfinite(raw)) else raw
            if raw is None and _numeric(table, c.sort_key):
                sort_value = ""
            klass = "num" if c.align == "right" else "text"
            cells.append(f'<td class="{klass}" data-v="{html_escape(sort_value)}">{html_escape(shown)}</td>')
        row_class = ' class="baseline"' if r.get("baseline") else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    meta = "".join(f"<dt>{html_escape(k)}</dt><dd>{html_escape(v)}</dd>"
                   for k, v in table.meta.items() if v not in (None, "", [], {}) and k != "notes")
    notes = "".join(f"<li>{html_escape(n)}</li>" for n in table.notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html_escape(table.title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html_escape(table.title)}</h1>
<table id="board">
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<dl>{meta}</dl>
<ul class="notes">{notes}</ul>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _key(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-").lower() or "col"


def _numeric(table: Table, key: str | None) -> bool:
    if key is None:
        return False
    values = [r.get(key) for r in table.rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
