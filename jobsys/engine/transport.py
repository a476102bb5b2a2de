"""kombu's Redis transport, with one failure of a lost connection made survivable.

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
"""

from __future__ import annotations

from typing import Any

import structlog
from kombu.transport import redis as kombu_redis

log = structlog.get_logger("jobsys.transport")


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
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
        super().ack(delivery_tag)

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
