"""The ``jobsys`` command refuses bad input in one line, prefixed ``jobsys: error:``."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import click
import pytest
import structlog

from jobsys.engine import runtime
from jobsys.interfaces.clitypes import parse_duration

# Servers nobody listens on: nothing in these tests may need a real one.
DOWN = {
    "JOBSYS_DATABASE_URL": "postgresql://jobsys:pg-secret@127.0.0.1:1/jobsys",
    "JOBSYS_BROKER_URL": "redis://:redis-secret@127.0.0.1:1/0",
}


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Run ``main()`` in this process with the given arguments and environment."""
    from jobsys.interfaces.cli import main

    previous = runtime.install(None)
    logging = structlog.get_config()  # main() sends the engine's logs to stderr

    def invoke(*args: str, env: dict[str, str] | None = None) -> Done:
        for name, value in {**DOWN, **(env or {})}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["jobsys", *args])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return Done(code, captured.out, captured.err)

    yield invoke
    runtime.reset()
    runtime.install(previous)
    structlog.configure(**logging)


def _one_error_line(done: Done) -> str:
    lines = done.err.splitlines()
    assert done.code != 0, done
    assert len(lines) == 1, done.err
    assert lines[0].startswith("jobsys: error: "), done.err
    return lines[0]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "-1d", "d7", "1e3", "nan", "99999999999w"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["job", "xyz"], "'xyz' is not a job id"),
        (["dlq", "purge", "--older-than", "3x"], "duration '3x'"),
        (["dlq", "purge", "--older-than", "7"], "with a unit"),
        (["dlq", "purge", "--older-than", "99999999999w"], "exceeds 100 years"),
        (["enqueue", "k", "--user", "u", "--payload", "{bad"], "not valid JSON"),
        (["enqueue", "k", "--user", "u", "--payload", "[1]"], "must be a JSON object"),
        (["enqueue", "k", "--user", "u", "--payload", "[" * 100_000], "nested too deeply"),
        (
            ["enqueue", "k", "--user", "u", "--payload", '{"v":' + "[" * 500 + "]" * 500 + "}"],
            "--payload: JSON nested more than 100 levels deep",
        ),
        (["enqueue", "k", "--user", "u", "--delay", "1e12"], "'--delay': '1e12'"),
        (["enqueue", "k", "--user", "u", "--delay", "nan"], "'--delay': 'nan'"),
        (["enqueue", "k", "--user", "u", "--delay", "-inf"], "'--delay': '-inf'"),
        (["enqueue", "k"], "Missing option '--user'"),
        (["enqueue"], "Missing argument 'KIND'"),
        (["jobs", "--status", "nope"], "'nope' is not one of"),
        (["jobs", "--nope"], "No such option '--nope'"),
        (["nope"], "No such command 'nope'"),
        (["user", "set", "a@b.c", "--weight", "nan"], "'--weight': 'nan' is not a number"),
        (["user", "set", "a@b.c", "--sync-interval", "9999999999d"], "exceeds 100 years"),
        (["demo", "--fault-rate", "nan"], "'--fault-rate'"),
        (["user", "set", "a@b.c", "--max-queued", "99999999999999"], "exceeds 2147483647"),
    ],
)
def test_bad_input_is_one_clear_line_without_traceback(
    run: object, args: list[str], expected: str
) -> None:
    # When a user mistypes a command
    done = run(*args)  # type: ignore[operator]
    # Then it exits non-zero with one line naming what is wrong, and no traceback
    line = _one_error_line(done)
    assert expected in line
    assert done.out == ""


def test_usage_errors_point_at_the_command_help(run: object) -> None:
    done = run("dlq", "purge")  # type: ignore[operator]
    assert _one_error_line(done) == (
        "jobsys: error: Missing option '--older-than'. (see 'jobsys dlq purge --help')"
    )
    assert done.code == 2


def test_version(run: object) -> None:
    from importlib.metadata import version

    done = run("--version")  # type: ignore[operator]
    assert (done.code, done.out.strip()) == (0, f"jobsys {version('jobsys')}")


def _commands(group: click.Group, path: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    from jobsys.interfaces.cli import cli

    missing = [
        f"{path} {param.name}"
        for path, command in _commands(cli, "jobsys")
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    undocumented = [path for path, command in _commands(cli, "jobsys") if not command.help]
    assert (missing, undocumented) == ([], [])


@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade"],
        ["jobs"],
        ["enqueue", "sync.user", "--user", "u"],
        ["sync", "someone@example.com"],
        ["dlq", "retry", "1"],
        ["cancel", "01c5a47a"],
    ],
)
def test_postgresql_down_is_one_line(run: object, args: list[str]) -> None:
    # Given a database URL nobody answers at
    # When a command needs PostgreSQL
    done = run(*args)  # type: ignore[operator]
    # Then it says it cannot reach it, in one line, without the password
    line = _one_error_line(done)
    assert "cannot reach PostgreSQL" in line
    assert "pg-secret" not in done.err


def test_redis_down_is_one_line_and_never_shows_the_password(run: object) -> None:
    done = run("breakers")  # type: ignore[operator]
    line = _one_error_line(done)
    assert "cannot read breakers from Redis at redis://:***@127.0.0.1:1/0" in line
    assert "redis-secret" not in done.err


def test_a_malformed_url_is_reported_without_its_password(run: object) -> None:
    done = run("jobs", env={"JOBSYS_DATABASE_URL": "mysql://u:hunter2@x/y"})  # type: ignore[operator]
    line = _one_error_line(done)
    assert "JOBSYS_DATABASE_URL='mysql://u:***@x/y' is not a valid URL" in line
    assert "hunter2" not in done.err


def test_a_busy_port_is_one_line_naming_it(run: object) -> None:
    # Given a port another process listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the emulator is asked to serve on it
        done = run("emulator", "--port", str(port))  # type: ignore[operator]
    # Then it says so in one line
    line = _one_error_line(done)
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_nothing_configured_is_one_line_for_the_cli_and_the_worker(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "JOBSYS_HOME": str(tmp_path)}
    for command in (
        [sys.executable, "-c", "from jobsys.interfaces.cli import main; main()", "db", "upgrade"],
        [sys.executable, "-m", "celery", "-A", "jobsys", "worker", "-c", "1"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode != 0
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("jobsys: error: JOBSYS_DATABASE_URL and JOBSYS_BROKER_URL not set")
