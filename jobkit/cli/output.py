"""How commands render what they read: tables that never cut a key, JSON, times in one format.

Stored text is data: everything read back from the database goes through :func:`cell`, so a
job name or error message is printed as written, never interpreted as Rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobkit._clock import to_datetime

console = Console()

F = TypeVar("F", bound=Callable[..., Any])

#: Console width of ``--wide``: wide enough that no table of jobkit's ever wraps.
WIDE = 10_000
#: Columns of free text (progress, error lists) wrap, but not below this many cells.
FOLD_MIN = 16


def cell(value: object) -> Text:
    """A table cell that shows ``value`` literally: stored text is data, never Rich markup."""
    return Text("-" if value is None else str(value))


def fmt_time(value: datetime | float | None) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM:SS`` (``-`` when there is none)."""
    if value is None:
        return "-"
    when = to_datetime(value) if isinstance(value, float | int) else value
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def wide_option(fn: F) -> F:
    """The ``--wide`` flag of every table: one line per row, however wide the terminal."""
    return click.option("--wide", is_flag=True, help="One line per row: never wrap, whatever the width.")(fn)


def json_option(fn: F) -> F:
    """The ``--json`` flag of every listing and ``show``."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def echo_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (datetimes and other values by their ``str``)."""
    click.echo(json.dumps(data, indent=2, default=str))


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, fold: Collection[str] = (), wide: bool = False
) -> None:
    """A table whose cells are never cut: only the free-text ``fold`` columns wrap onto more lines.

    At a narrow width Rich would shorten every column to ``invoic…``; each other column (ids,
    type names, counts, times) gets its full width as a minimum instead. ``wide`` prints each row
    on one line whatever the terminal's width.
    """
    cells = [[cell(value) for value in row] for row in rows]
    table = Table()
    needed = 1  # the left border; each column adds its width, padding and a border
    for index, name in enumerate(columns):
        longest = max([len(name)] + [text.cell_len for text in (row[index] for row in cells)])
        if name in fold:
            # Free text wraps, but never narrower than its heading (or FOLD_MIN, if the text is longer).
            least = max(len(name), min(longest, FOLD_MIN))
            table.add_column(name, overflow="fold", min_width=least)
        else:
            least = longest
            table.add_column(name, no_wrap=True, min_width=least)
        needed += least + 3
    for row in cells:
        table.add_row(*row)
    # Console.print cannot widen past the console's own width, so a table that cannot fit without
    # cutting a cell (and every --wide table) prints through a console as wide as it needs: the
    # terminal then wraps the line, and nothing is lost.
    if wide:
        Console(width=WIDE).print(table)
    elif needed > console.width:
        Console(width=needed).print(table)
    else:
        console.print(table)
