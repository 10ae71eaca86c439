"""How commands render what they read: table cells shown literally, times in one format.

Stored text is data: everything read back from the database goes through :func:`cell`, so a
job name or error message is printed as written, never interpreted as Rich markup.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.text import Text

from jobkit._clock import to_datetime

console = Console()


def cell(value: object) -> Text:
    """A table cell that shows ``value`` literally: stored text is data, never Rich markup."""
    return Text("-" if value is None else str(value))


def fmt_time(value: datetime | float | None) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM:SS`` (``-`` when there is none)."""
    if value is None:
        return "-"
    when = to_datetime(value) if isinstance(value, float | int) else value
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
