from __future__ import annotations

import subprocess
import sys

import pytest

from jobsys.interfaces.cli import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "-1d", "d7"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["job", "123"], "'123' is not a valid UUID"),
        (["dlq", "purge", "--older-than", "3x"], "duration '3x'"),
        (["enqueue", "k", "--user", "u", "--payload", "{bad"], "not valid JSON"),
        (["enqueue", "k", "--user", "u", "--payload", "[1]"], "must be a JSON object"),
        (["jobs", "--status", "nope"], "'nope' is not one of"),
    ],
)
def test_bad_input_is_one_clear_line_without_traceback(args: list[str], expected: str) -> None:
    # When a user mistypes a command
    done = subprocess.run(
        [sys.executable, "-c", "from jobsys.interfaces.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it exits non-zero with the reason and no traceback
    assert done.returncode != 0
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_malformed_url_is_reported_by_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from jobsys.interfaces.cli import main; main()", "jobs"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"JOBSYS_DATABASE_URL": "mysql://x/y", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "JOBSYS_DATABASE_URL='mysql://x/y' is not a valid URL" in done.stderr
    assert "Traceback" not in done.stderr
