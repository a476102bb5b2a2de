"""Text printed from data is printed literally: no rich markup, no control characters."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from jobsys.interfaces import render

HOSTILE = "Eve [/bold] [red]x[/red] \x1b[31mred\x1b[0m \u202eevil\r\nnext"
SHOWN = "Eve [/bold] [red]x[/red] [31mred[0m evil next"


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=300, color_system=None))
    return out


def test_a_table_prints_markup_and_escapes_literally(screen: io.StringIO) -> None:
    # When a row holds a display name with markup and terminal escapes
    render.table("contacts of Eve [/bold]", ["name [b]"], [[HOSTILE]])
    # Then it is printed as written, without the control characters
    text = screen.getvalue()
    assert SHOWN in text
    assert "contacts of Eve [/bold]" in text
    assert "name [b]" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_a_record_keeps_a_tracebacks_lines_but_not_its_escapes(screen: io.StringIO) -> None:
    render.record("letter [/i]", {"reason [x]": HOSTILE, "traceback": "line 1\nline [/2]"})
    text = screen.getvalue()
    assert "letter [/i]" in text and "reason [x]" in text
    assert "line 1" in text and "line [/2]" in text
    assert "\x1b" not in text


def test_clean_strips_control_characters() -> None:
    assert render.clean("a\x00b\x07c\x9bd\te") == "abcd e"
    assert render.clean(None) == ""
