"""The one output object every verb prints through: tables and lines for people, JSON for tools.

``--json`` puts the result's JSON alone on stdout (notes and progress move to stderr);
``--json-out FILE`` writes the same JSON to a file. Tables read in a pipe (plain aligned text, no
width limit) and in a narrow terminal (wrapped headers; one block per row when even that is too
wide), so no figure is ever cut to "…".
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from atrous._atomic import atomic_write_text

__all__ = ["Output", "console", "err_console", "format_cell", "plain_table", "record_blocks"]

GAP = 2  # characters between two columns of a _rich_table (right padding, blank rule)
NAME_FOLD = 16  # the first column (row names) may fold down to this width in a terminal

console = Console()
err_console = Console(stderr=True)


def format_cell(value: Any) -> str:
    """A table cell: floats to 4 significant figures (thousands grouped), the rest as str."""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def plain_table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with two spaces, first left and the rest right; no width limit."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(columns), rule] + [line(r) for r in rows])


def record_blocks(title: str, columns: list[str], rows: list[list[str]]) -> str:
    """One block per row, ``column: value`` per line: for tables too wide to wrap readably."""
    width = max(len(c) for c in columns)
    blocks = [title]
    for row in rows:
        blocks.append(
            "\n".join(f"  {c.rjust(width)}  {v}" for c, v in zip(columns, row, strict=True))
        )
    return "\n\n".join(blocks)


def _word_widths(columns: list[str], rows: list[list[str]]) -> list[int]:
    """Per column, the longest word of its header and cells: the narrowest it reads without
    breaking a word or a number."""
    return [
        max(len(word) for text in [name] + [r[i] for r in rows] for word in text.split() or [""])
        for i, name in enumerate(columns)
    ]


def fold_name(text: str, width: int = NAME_FOLD) -> str:
    """Words of ``text`` longer than ``width`` on lines of at most ``width``, broken after '_',
    '-', '/', ':' or '.' where possible (rich wraps only at spaces and would drop a column)."""
    return " ".join(_fold_word(w, width) if len(w) > width else w for w in text.split(" "))


def _fold_word(text: str, width: int) -> str:
    """One long word on lines of at most ``width`` characters (see :func:`fold_name`)."""
    lines, line = [], ""
    for piece in re.findall(r"[^_\-/:.]+[_\-/:.]?|[_\-/:.]", text):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
        while len(line) > width:  # one piece longer than a line: cut it
            lines.append(line[:width])
            line = line[width:]
    return "\n".join([*lines, line] if line else lines)


def _table_width(widths: list[int]) -> int:
    """Printed width of a ``_rich_table`` whose columns are ``widths`` wide."""
    return sum(widths) + GAP * (len(widths) - 1)


def fit_widths(natural: list[int], minimum: list[int], width: int) -> list[int] | None:
    """Column widths from ``natural`` down to ``minimum`` (widest first) until the table fits in
    ``width``; None when even the minimum does not fit."""
    widths = list(natural)
    while _table_width(widths) > width:
        shrinkable = [i for i, (w, m) in enumerate(zip(widths, minimum, strict=True)) if w > m]
        if not shrinkable:
            return None
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    return widths


def _rich_table(title: str, columns: list[str], rows: list[list[str]], widths: list[int]):
    """A compact rich table of fixed column widths whose cells wrap, never into '…'."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title_justify="left",
    )
    for i, name in enumerate(columns):
        table.add_column(
            escape(name),
            justify="left" if i == 0 else "right",
            overflow="fold",
            width=widths[i],
        )
    for row in rows:
        table.add_row(*[escape(cell) for cell in row])
    return table


class Output:
    """Where one command's results go.

    Args:
        as_json: ``--json``: print only the result's JSON on stdout; tables and result lines are
            skipped, notes go to stderr.
        json_out: ``--json-out``: also write the result's JSON to this file (atomically).
    """

    def __init__(self, as_json: bool = False, json_out: Path | None = None) -> None:
        self.as_json = as_json
        self.json_out = json_out
        self._status: Any = None

    def progress(self, step: str) -> None:
        """Say which step of a long call is running: the spinner's text in a terminal, else a
        plain ``[hh:mm:ss] step...`` line on stderr (readable in ``| tee log``)."""
        if self._status is not None:
            self._status.update(escape(step) + "...")
        else:
            stamp = time.strftime("%H:%M:%S")
            err_console.print(f"[{stamp}] {step}...", markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def working(self, step: str) -> Iterator[Callable[[str], None]]:
        """Progress of a long call that starts with ``step``; yields :meth:`progress` for the
        library function to report its next steps through."""
        if not err_console.is_terminal:
            self.progress(step)
            yield self.progress
            return
        with err_console.status(escape(step) + "...") as status:
            self._status = status
            try:
                yield self.progress
            finally:
                self._status = None

    @property
    def console(self) -> Console:
        """The console for progress and notes: stderr under ``--json``, else stdout."""
        return err_console if self.as_json else console

    def json(self, data: Any) -> None:
        """The result as JSON: to ``--json-out`` when given, and on stdout under ``--json``."""
        text = json.dumps(data, indent=2, default=str) + "\n"
        if self.json_out is not None:
            atomic_write_text(self.json_out, text)
        if self.as_json:
            sys.stdout.write(text)
            sys.stdout.flush()

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        """A table of results (skipped under ``--json``), readable in a pipe and at 80 columns."""
        if self.as_json:
            return
        cells = [[format_cell(v) for v in row] for row in rows]
        out = console
        if not out.is_terminal:
            out.print(plain_table(title, columns, cells), markup=False, highlight=False,
                      soft_wrap=True)  # fmt: skip
            return
        natural = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        minimum = _word_widths(columns, cells)
        minimum[0] = min(minimum[0], NAME_FOLD)  # a long row name may fold onto a few lines
        widths = fit_widths(natural, minimum, out.width)
        if widths is None:  # would break words: one block per row
            out.print(record_blocks(title, columns, cells) + "\n", markup=False, highlight=False)
            return
        shown = [[fold_name(r[0], widths[0]), *r[1:]] for r in cells]
        out.print(_rich_table(title, columns, shown, widths))

    def print(self, text: str) -> None:
        """A line of the human-readable result (skipped under ``--json``); rich markup allowed."""
        if not self.as_json:
            console.print(text, highlight=False, soft_wrap=not console.is_terminal)

    def note(self, text: str) -> None:
        """A line about what happened (file written, engine picked): stderr under ``--json``."""
        out = self.console
        out.print(text, highlight=False, soft_wrap=not out.is_terminal)
