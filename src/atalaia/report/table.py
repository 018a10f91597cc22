"""Console tables that stay readable at 80 columns: numbers are never wrapped, cut or split; columns are
dropped by priority (and named in a note) rather than squeezed; `wide=True` keeps every column.

Why: rich squeezes a table that does not fit by folding every cell, so a 10-column table at 80 columns became
276 lines with "7,157/,888" split across lines and headers cut to "…". Here each column says whether it may
wrap (text) or not (numbers, names), and how dispensable it is; `fit_columns` keeps the most important ones
whose narrowest width fits. Report files (Markdown/HTML) keep the full table: this is for the terminal only.

Example::

    cols = [Col("target"), Col("MACs", priority=2), Col("source", text=True, priority=5)]
    print_table(console, "anchors", cols, [["esp32", 7157888, "esp-tflite-micro README"]], width=80)
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

#: A value that does not exist or does not apply: never "None" or "nan" in a numeric column.
DASH = "—"

#: Characters a column costs besides its content with rich's default box: one space each side + a rule.
_COLUMN_OVERHEAD = 3


@dataclass(frozen=True)
class Col:
    """One column. `text` columns may wrap at spaces down to `min_width`; the others never wrap.
    `priority` 0 is always kept; higher numbers are hidden first when the width is short."""

    title: str
    text: bool = False
    priority: int = 0
    min_width: int = 12
    justify: str = "left"


def cell(value: Any, spec: str = "") -> str:
    """A value as a cell: None/NaN/inf -> "—", numbers with `format(value, spec)` (e.g. ",", ".1f", "+.1%")."""
    if value is None:
        return DASH
    if isinstance(value, float) and not math.isfinite(value):
        return DASH
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        s = format(value, spec)
        return s.lstrip("+-") if not any(ch in "123456789" for ch in s) else s  # "-0.0%" -> "0.0%"
    return str(value)


def _needed(col: Col, cells: Sequence[str]) -> int:
    """Narrowest content width: the longest header word, and every cell whole (or `min_width` for text)."""
    head = max((len(w) for w in col.title.split()), default=0)
    longest = max((len(c) for c in cells), default=0)
    body = min(col.min_width, longest) if col.text else longest
    if col.text:  # a text column never narrower than its longest word up to min_width (words fold beyond)
        body = max(body, min(col.min_width, max((len(w) for c in cells for w in c.split()), default=0)))
    return max(head, body, 1)


def table_width(widths: Sequence[int]) -> int:
    return sum(w + _COLUMN_OVERHEAD for w in widths) + 1


def fit_columns(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """Indices of the columns to show at `width`: drop the highest-priority-number (rightmost first) columns
    until the narrowest layout fits. Priority-0 columns are always kept, even if they do not fit."""
    need = [_needed(c, [r[i] for r in rows]) for i, c in enumerate(cols)]
    keep = list(range(len(cols)))
    order = sorted((i for i, c in enumerate(cols) if c.priority > 0), key=lambda i: (-cols[i].priority, -i))
    for i in order:
        if table_width([need[k] for k in keep]) <= width:
            break
        keep.remove(i)
    return keep


def build_table(title: str | None, cols: Sequence[Col], rows: Sequence[Sequence[Any]], *, width: int,
                wide: bool = False) -> tuple[Table, list[str], int]:
    """(rich Table, titles of hidden columns, width the table needs). `rows` may hold raw values (see `cell`)."""
    srows = [[v if isinstance(v, str) else cell(v) for v in r] for r in rows]
    keep = list(range(len(cols))) if wide else fit_columns(cols, srows, width)
    natural = [max([len(cols[i].title), *(len(r[i]) for r in srows)]) for i in keep]
    if wide:
        widths = natural
    else:  # narrowest layout, then the spare width to the columns that would use it
        widths = [_needed(cols[i], [r[i] for r in srows]) for i in keep]
        spare = width - table_width(widths)
        for j in sorted(range(len(keep)), key=lambda j: (cols[keep[j]].text, j)):  # headers on one line first
            give = max(0, min(spare, natural[j] - widths[j]))
            widths[j] += give
            spare -= give
    t = Table(title=title)
    for i, w in zip(keep, widths, strict=True):
        # a fixed width per column, never below the longest number: rich wraps headers at spaces and text
        # cells at spaces (folding words longer than the column), and never has to touch a number
        t.add_column(cols[i].title, width=w, overflow="fold", justify=cols[i].justify)  # type: ignore[arg-type]
    for r in srows:
        t.add_row(*(r[i] for i in keep))
    hidden = [cols[i].title for i in range(len(cols)) if i not in keep]
    return t, hidden, table_width(widths)


def terminal_width(default: int = 80) -> int:
    """Width to lay console tables out for: the terminal's, else $COLUMNS, else `default` (logs and pipes get
    a table that still reads at 80 columns; `--wide` is there for the rest)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return os.get_terminal_size(sys.stdout.fileno()).columns
    return default


def print_table(console: Console, title: str | None, cols: Sequence[Col], rows: Sequence[Sequence[Any]], *,
                width: int | None = None, wide: bool = False) -> list[str]:
    """Print the table fitted to `width` (default `terminal_width()`), plus a one-line note naming the
    hidden columns. With `wide`, every column at its natural width. Returns the hidden titles."""
    width = terminal_width() if width is None else width
    table, hidden, need = build_table(title, cols, rows, width=width, wide=wide)
    if wide:  # wider than the console: a console of its own on the same file (rich caps print() at its width)
        Console(file=console.file, width=max(need, width), force_terminal=console.is_terminal,
                no_color=console.no_color, highlight=False).print(table)
    else:
        console.print(table, width=width)  # through the caller's console (recording consoles, files)
    if hidden:
        console.print(f"(not shown at {width} columns: {', '.join(hidden)}; --wide shows every column)",
                      style="dim", highlight=False, width=width)
    return hidden


__all__ = ["DASH", "Col", "build_table", "cell", "fit_columns", "print_table", "table_width", "terminal_width"]
