"""Printing records for people (rich tables) or machines (JSON).

Everything printed from data (names, subjects, error messages, reasons) goes
through :func:`literal`: rich would otherwise read ``[bold]`` in a sender's
display name as markup (and fail on ``[/bold]``), and a terminal would obey
the escape sequences a message's subject may carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()

# C0 and C1 controls (ESC starts terminal sequences) and the bidirectional
# overrides that make text display in another order than it reads.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile(r"[\t\n\r]+")
_TABS = re.compile(r"[\t\r]+")


def clean(value: object, *, lines: bool = False) -> str:
    """``value`` as plain text: control characters dropped, and line breaks too
    (as spaces) unless ``lines`` keeps them (a traceback in a record)."""
    text = "" if value is None else str(value)
    return _CONTROL.sub("", (_TABS if lines else _BREAKS).sub(" ", text))


def literal(value: object, *, lines: bool = False) -> Text:
    """``value`` as rich text that is printed as it is (no markup, no control characters)."""
    return Text(clean(value, lines=lines))


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=literal(title))
    for column in columns:
        t.add_column(literal(column))
    for row in rows:
        t.add_row(*(literal(v) for v in row))
    console.print(t)


def record(title: str, data: dict[str, Any]) -> None:
    t = Table(title=literal(title), show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
        t.add_row(literal(key), literal(shown, lines=True))
    console.print(t)
