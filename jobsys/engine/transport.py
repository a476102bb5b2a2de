"""kombu's Redis transport: a lost connection's acks made survivable, and acks deferred.

With kombu 5.7 and Celery 5.7, a worker whose broker connection drops while it
holds unacknowledged messages (an ETA or countdown message waits unacked in
the worker's memory; so does a running ``acks_late`` task) can die with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")``. The consumer first *collects* the broken connection, which
detaches its transport (``transport.client = None``), then *closes* it; the
close closes the default channel again, whose QoS restores the unacknowledged
messages through a connection pool that can no longer be built from the
detached transport. An AttributeError is no connection error, so the worker's
main process exits and the node's capacity is gone.

The same detached channel can also be asked to ack or reject a message
after the consumer reconnected (a message received before the loss), with
the same AttributeError. Here a QoS on a detached transport skips that
restore, ack or reject and says so. Nothing is
lost by it: the messages are still in Redis's unacked hash, from which
kombu's ``restore_visible`` puts them back after the visibility timeout, or
they were lost with the server, and then the sweeper publishes their jobs
again from PostgreSQL (the job row is the truth; design §3.1).

Acks are also deferred: kombu writes each ack to Redis in a round trip of
its own from the node's main thread, the one thread that feeds every pool
process. Here an ack's removal from the unacked hash rides on the pipeline
of the next message received, and is written on its own only when the node
holds no other message or the oldest deferred ack is ``ACK_DELAY`` old. A
deferred ack lost with its node leaves its message in the unacked hash; a
copy Redis restores later is a delivery the job's conditional claim refuses,
since the job row already holds its outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

ACK_DELAY = 0.5  # s an ack may wait for the next message's pipeline

log = structlog.get_logger("jobsys.transport")


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acked: list[str] = []
        self._acked_at = 0.0
        # A thread pool acks from its own threads while the event loop appends.
        self._acked_lock = threading.Lock()
        self._client: Any = None

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        """kombu's, on a client kept for the channel's pool: kombu builds a new
        ``redis.Redis`` for each message taken (50 us, on the thread that feeds
        every pool process). A client holds no connection of its own, so one
        serves every thread.

        Without MULTI/EXEC: the unacked index and hash need no atomic update,
        since a restore reads the entries past the visibility timeout (not one
        being written) and takes a tag missing from the hash for gone.
        """
        if pipe is not None:
            yield pipe
            return
        if client is None:
            channel: Any = self.channel
            if self._client is None or self._client.connection_pool is not channel.pool:
                self._client = channel._create_client()
            client = self._client
        yield client.pipeline(transaction=False)

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's append, with the deferred acks' removals in its pipeline."""
        info = message.delivery_info
        raw = dumps([message._raw, info["exchange"], info["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            self._remove_acked(pipe)
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
            pipe.hset(self.unacked_key, delivery_tag, raw).execute()
            virtual.QoS.append(self, message, delivery_tag)

    def can_consume(self) -> bool:
        # Asked on every turn of the event loop: a quiet node's acks wait no longer.
        if self._acked and time.monotonic() - self._acked_at >= ACK_DELAY:
            self.flush_acks()
        return bool(super().can_consume())

    def flush_acks(self) -> None:
        """Write the deferred acks now."""
        if not self._acked:
            return
        if self._detached():
            self._take_acked()
            return
        with self.pipe_or_acquire() as pipe:
            self._remove_acked(pipe)
            pipe.execute()

    def _held(self) -> int:
        # kombu's virtual QoS drops acked tags from ``_delivered`` lazily (``_dirty``).
        return len(self._delivered or ()) - len(self._dirty or ())

    def _take_acked(self) -> list[str]:
        with self._acked_lock:
            acked, self._acked = self._acked, []
        return acked

    def _remove_acked(self, pipe: Any) -> None:
        acked = self._take_acked()
        if acked:
            pipe.zrem(self.unacked_index_key, *acked)
            pipe.hdel(self.unacked_key, *acked)

    def restore_unacked(self, client: Any = None) -> Any:
        try:
            self.flush_acks()
        except Exception as e:  # the copies Redis restores are refused by their claims
            log.warning("broker.acks_unwritten", error=str(e))
        # kombu's Redis QoS restores every tag it delivered, acked ones too: it
        # relied on their removal from the hash, which may not have been written.
        delivered: dict[str, Any] = self._delivered or {}
        for tag in self._dirty or ():
            delivered.pop(tag, None)
        if client is None and self._detached():
            held: dict[str, Any] = self._delivered or {}
            log.warning(
                "broker.restore_skipped",
                messages=len(held),
                why="connection already collected; Redis or the sweeper restores them",
            )
            held.clear()
            return None
        return super().restore_unacked(client)

    def ack(self, delivery_tag: str) -> None:
        if self._detached():
            # A late ack on the channel of a collected connection (the same kombu
            # path): its message is restored by Redis or re-published by the
            # sweeper, and the conditional claim ignores the copy.
            log.warning("broker.ack_skipped", delivery_tag=delivery_tag)
            return
        with self._acked_lock:
            if not self._acked:
                self._acked_at = time.monotonic()
            self._acked.append(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)
        if self._held() == 0:  # nothing else in hand: no message may come soon
            self.flush_acks()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._detached():
            log.warning("broker.reject_skipped", delivery_tag=delivery_tag, requeue=requeue)
            return
        super().reject(delivery_tag, requeue=requeue)

    def _detached(self) -> bool:
        transport = self.channel.connection
        return transport is None or transport.client is None


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
