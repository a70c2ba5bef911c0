"""HTML tables for the report pages (escaped with markupsafe; sortable by a few lines of inline script)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape


@dataclass
class Cell:
    text: Any
    value: Any = None  # what the column sorts by (default: the text)
    cls: str = ""


@dataclass
class Table:
    id: str
    columns: Sequence[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)  # (row class, cells)
    foot: list[tuple[str, list[Cell]]] = field(default_factory=list)
    sortable: bool = True
    left: frozenset[int] = frozenset()  # left-aligned column indexes (text)

    def add(self, cells: list[Any], cls: str = "", foot: bool = False) -> None:
        row = [c if isinstance(c, Cell) else Cell(c) for c in cells]
        (self.foot if foot else self.rows).append((cls, row))

    def _row(self, cls: str, cells: list[Cell]) -> str:
        tds = []
        for i, cell in enumerate(cells):
            klass = " ".join(x for x in (cell.cls, "l" if i in self.left else "") if x)
            value = cell.text if cell.value is None else cell.value
            tds.append(f'<td class="{escape(klass)}" data-v="{escape(value)}">{escape(cell.text)}</td>')
        return f'<tr class="{escape(cls)}">{"".join(tds)}</tr>'

    def html(self) -> Markup:
        head = "".join(
            f'<th class="{"l" if i in self.left else ""}">{escape(c)}</th>' for i, c in enumerate(self.columns)
        )
        body = "".join(self._row(cls, cells) for cls, cells in self.rows)
        foot = "".join(self._row(cls, cells) for cls, cells in self.foot)
        klass = "sortable" if self.sortable else ""
        return Markup(
            f'<table id="{escape(self.id)}" class="{klass}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            + (f"<tfoot>{foot}</tfoot>" if foot else "")
            + "</table>"
        )
