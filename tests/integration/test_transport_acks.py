"""Deferred acks on jobsys's Redis transport, against a real Redis.

kombu's unacked hash (``unacked``) holds every message a node has taken and
not yet acked; Redis restores what stays there after the visibility timeout.
An ack's removal waits for the next message's pipeline, but never past the
moment the node holds nothing else, ``ACK_DELAY``, or a close.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from jobsys.engine import transport
from jobsys.engine.transport import TRANSPORT

pytestmark = pytest.mark.integration

QUEUE = Queue("acks", Exchange("acks", type="direct"), routing_key="acks")


@pytest.fixture
def channel(broker_url: str) -> Iterator[Any]:
    conn = Connection(broker_url, transport=TRANSPORT)
    chan = conn.channel()
    QUEUE(chan).declare()
    producer = conn.Producer(channel=chan)
    for n in range(4):
        producer.publish({"n": n}, exchange=QUEUE.exchange, routing_key="acks")
    try:
        yield chan
    finally:
        conn.release()


def unacked(broker_url: str) -> set[str]:
    return {k.decode() for k in redis.Redis.from_url(broker_url).hkeys("unacked")}


def take(channel: Any) -> Any:
    message = channel.basic_get("acks")
    assert message is not None
    return message


def test_an_ack_rides_on_the_next_message_and_is_written_when_nothing_else_is_held(
    channel: Any, broker_url: str
) -> None:
    # Given two messages taken
    first, second = take(channel), take(channel)
    assert unacked(broker_url) == {first.delivery_tag, second.delivery_tag}

    # When the first is acked while the second is held, its removal waits
    first.ack()
    assert unacked(broker_url) == {first.delivery_tag, second.delivery_tag}

    # Then the next message's pipeline removes it
    third = take(channel)
    assert unacked(broker_url) == {second.delivery_tag, third.delivery_tag}

    # And once nothing else is held, an ack is written at once
    second.ack()
    third.ack()
    assert unacked(broker_url) == set()


def test_a_deferred_ack_is_written_after_the_ack_delay_by_the_event_loop(
    channel: Any, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an ack deferred while another message is held
    first, second = take(channel), take(channel)
    first.ack()
    assert first.delivery_tag in unacked(broker_url)

    # When the event loop asks whether it may consume once the delay has passed
    monkeypatch.setattr(transport, "ACK_DELAY", 0.0)
    channel.qos.can_consume()

    # Then the ack is written, and the held message stays unacked
    assert unacked(broker_url) == {second.delivery_tag}


def test_a_close_writes_deferred_acks_and_restores_only_the_messages_still_held(
    channel: Any, broker_url: str
) -> None:
    # Given one message acked (deferred) and one still held
    first, second = take(channel), take(channel)
    first.ack()

    # When the channel closes (as a worker's warm shutdown does)
    channel.close()

    # Then nothing is left unacked, the held message is back in the queue, and the
    # acked one is not
    assert unacked(broker_url) == set()
    client = redis.Redis.from_url(broker_url)
    back = client.lrange("acks", 0, -1)
    assert len(back) == 3  # the two never taken, and the held one
    assert sum(second.delivery_tag.encode() in m for m in back) == 1
    assert not any(first.delivery_tag.encode() in m for m in back)


def test_taking_messages_builds_one_redis_client_not_one_a_message(
    channel: Any, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a record of the Redis clients that open pipelines (kept alive, so that
    # each is told apart by identity)
    clients: list[Any] = []
    pipeline = redis.Redis.pipeline

    def recorded(self: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        if not any(c is self for c in clients):
            clients.append(self)
        return pipeline(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "pipeline", recorded)

    # When the node takes three messages, acking each before the next
    for _ in range(3):
        take(channel).ack()

    # Then every message's pipeline ran on one client (kombu builds one a message,
    # 50 us each on the thread that feeds the pool), and the acks were all written
    assert len(clients) == 1
    assert unacked(broker_url) == set()
