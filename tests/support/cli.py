"""Running the installed ``jobsys`` command on a test's servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Env
from tests.support.workers import REPO


def jobsys(
    env: Env, *args: str, stdin: str | None = None, cwd: Path | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``jobsys`` command on the test's servers (plus ``variables``),
    in ``cwd`` if given."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    environ.pop("APP_ENCRYPTION_KEY", None)
    environ.update({**env.environ, "PYTHONPATH": str(REPO), **variables})
    command = [str(Path(sys.executable).with_name("jobsys")), *args]
    return subprocess.run(
        command, env=environ, input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobsys: error: "), done.stderr
    return lines[0]
