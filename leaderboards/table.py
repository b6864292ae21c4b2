"""The ``Table`` every renderer takes: flat rows, the display columns and the meta lines printed under them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    header: str
    show: Callable[[dict[str, Any]], str]  # the cell text for a row ("" for blank)
    sort_key: str | None = None  # the raw field HTML sorts this column by (numeric when the values are numbers)
    align: str = "right"


@dataclass
class Table:
    title: str
    fields: list[str]  # the raw keys of each row, in order (CSV/JSON)
    rows: list[dict[str, Any]]
    columns: list[Column]
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def visible(self) -> list[Column]:
        return [c for c in self.columns if any(c.show(r) for r in self.rows)]
