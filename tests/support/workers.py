"""Real ``celery -A jobsys worker`` processes for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from jobsys.store import Store
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]

# Workers run the test kinds beside the sync pipeline.
WORKER_IMPORTS = "jobsys.tasks,tests.support.kinds"

# Short periods so that recovery paths run in seconds (see design §3.3).
FAST_SETTINGS = {
    "JOBSYS_RETRY_BASE": "0.2",
    "JOBSYS_RETRY_CAP": "5",
    "JOBSYS_LEASE_GRACE": "2",
    "JOBSYS_WORKER_HEARTBEAT": "0.5",
    "JOBSYS_WORKER_DEAD_AFTER": "3",
    "JOBSYS_SWEEP_INTERVAL": "1",
    "JOBSYS_LOST_AFTER": "3",
    "JOBSYS_DB_RETRY_DELAY": "0.5",
}


class Worker:
    """One worker node: the Celery main process and its prefork pool, in its own session."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_path: Path,
        concurrency: int,
        *,
        queues: str | None = None,
    ) -> None:
        self.name = name
        self.node = f"{name}@{socket.gethostname()}"
        self.log_path = log_path
        command = [
            sys.executable, "-m", "celery", "-A", "jobsys", "worker",
            "-P", "prefork", "-c", str(concurrency), "-n", f"{name}@%h", "-l", "info",
            # Gossip and mingle are Celery's cluster chatter; jobsys does not use them.
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if queues is not None:
            command += ["-Q", queues]
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, store: Store, timeout: float = 30.0) -> None:
        """Wait for the node's row in ``workers`` (written once Celery is consuming)."""

        def registered() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited early:\n{self.log_tail()}")
            return any(
                w.name == self.node and w.pid == self.pid and w.status == "alive"
                for w in store.list_workers()
            )

        wait_until(registered, timeout=timeout, what=f"worker {self.node} to register")

    def kill_node(self) -> None:
        """``kill -9`` the main process and every pool child at once (a lost machine)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def abort(self) -> None:
        """``kill -9`` the whole node if it still runs, and close its log."""
        if self.process.poll() is None:
            self.kill_node()
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # children that outlived their parent
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])
