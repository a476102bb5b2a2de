"""A Redis client for guards that fails fast for a while after Redis stopped answering.

Guards fail safe when Redis is unreachable, but a Redis that hangs (rather
than refusing connections) would cost every guard operation its socket
timeout, and one guarded call makes several. After a connection error or a
timeout this client refuses every command at once for ``cooldown`` seconds,
then tries Redis again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class FusedRedis(redis.Redis):
    """``redis.Redis`` whose fuse blows on a connection error or timeout.

    Commands (scripts included) go through :meth:`execute_command`; pipelines
    do not, and fail on their own timeout.
    """

    cooldown = 2.0
    _blown_until = 0.0
    _fuse_lock = threading.Lock()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if time.monotonic() < self._blown_until:
            raise RedisConnectionError("Redis did not answer just now; guards skip it for a moment")
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):
            with self._fuse_lock:
                self._blown_until = time.monotonic() + self.cooldown
            raise
