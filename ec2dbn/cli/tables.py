"""Tables that fit the terminal: columns dropped by priority, never cut into "…".

A terminal gets its own width (80 columns stays readable); a pipe or a file gets every column at full
width unless COLUMNS says otherwise. When the columns do not fit, the least important ones are left out
(a note names them; `--json` has them all) until what remains fits with only the wrapping columns
wrapped: a value is shown whole or not at all, and columns marked `keep` (a run's status, the flag that
says a type is retired) are never left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ec2dbn.cli.output import printable, stdout

#: The width a pipe or file gets when COLUMNS does not say: wide enough for every column of any table.
UNLIMITED = 1000


@dataclass(frozen=True)
class Column:
    """A column: `priority` orders what is left out first (higher goes first); `keep` columns stay."""

    header: str
    priority: int = 0
    keep: bool = False
    justify: Literal["left", "right"] = "left"
    wrap: bool = False  # may break over lines (at spaces; a long word is folded)


def output_width(console: Console = stdout) -> int:
    """Columns to fit: the terminal's, else $COLUMNS, else UNLIMITED (a pipe keeps every column whole)."""
    if console.is_terminal:
        return console.width
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else UNLIMITED


def fit_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[object]],
    width: int,
    title: str | None = None,
    row_styles: Sequence[str | None] | None = None,
) -> tuple[Table, list[str]]:
    """The table with the columns that fit in `width`, and the headers left out (least important first)."""
    texts = [[printable(str(v)) for v in row] for row in rows]
    least = [_least_width(c, [t[i] for t in texts]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    dropped: list[str] = []
    while True:
        # rich's default box: a border left of every column and one at the end, one space each side
        need = sum(least[i] + 3 for i in shown) + 1
        droppable = [i for i in shown if not columns[i].keep]
        if need <= width or not droppable:
            return _table(columns, shown, texts, least, title, row_styles), dropped
        worst = max(droppable, key=lambda i: (columns[i].priority, i))
        shown.remove(worst)
        dropped.append(columns[worst].header)


def _least_width(column: Column, texts: list[str]) -> int:
    """The narrowest a column can be with every value whole: its widest value, or widest word if it wraps."""
    words = [column.header, *texts]
    if column.wrap:
        words = [w for text in words for w in text.split()]
    return max((cell_len(w) for w in words), default=1)


def _table(
    columns: Sequence[Column],
    shown: list[int],
    texts: list[list[str]],
    least: list[int],
    title: str | None,
    row_styles: Sequence[str | None] | None,
) -> Table:
    table = Table(title=title, title_justify="left")
    for i in shown:
        c = columns[i]
        # A wrapping column is never squeezed below its widest word: words are wrapped, not cut.
        table.add_column(
            c.header, justify=c.justify, no_wrap=not c.wrap, min_width=least[i] if c.wrap else None
        )
    for n, row in enumerate(texts):
        style = row_styles[n] if row_styles else None
        table.add_row(*(Text(row[i]) for i in shown), style=style)
    return table


def print_fitted(
    columns: Sequence[Column],
    rows: Sequence[Sequence[object]],
    title: str | None = None,
    row_styles: Sequence[str | None] | None = None,
    notes: Sequence[str] = (),
) -> list[str]:
    """Print the table fitted to the output's width, then `notes` wrapped to it; returns the headers left
    out (a note names them)."""
    width = output_width()
    table, dropped = fit_table(columns, rows, width, title, row_styles)
    out = Console(file=stdout.file, width=width, highlight=False, markup=False, emoji=False)
    if stdout.is_terminal:
        out = stdout
    out.print(table)
    if dropped:
        notes = [
            f"(left out at {width} columns: {', '.join(dropped)}; widen the terminal or use --json)",
            *notes,
        ]
    for note in notes:
        out.print(Text(printable(note)), soft_wrap=False)
    return dropped
