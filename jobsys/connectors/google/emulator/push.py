"""Gmail push notifications, as ``users.watch`` and a Pub/Sub push subscription deliver them.

Google's chain: ``users.watch(topicName)`` makes Gmail publish a message to the
topic on every mailbox change; a push subscription on the topic POSTs it to an
HTTPS endpoint. Here the subscription is made through the admin API
(``POST /_emulator/topics``); a change to a watched mailbox queues the same body
Pub/Sub would POST, and one delivery thread sends the queue in order (the change
itself never waits). As Pub/Sub does, an answer other than 2xx is tried again
with backoff, a few times here.
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")
WATCH_DAYS = 7  # Gmail's watches expire after a week unless renewed
TRIES = 4
BACKOFF = 0.5  # seconds before the second try, doubling


@dataclass(frozen=True)
class Watch:
    topic: str
    expiration_ms: int


class PushHub:
    """Topics' push endpoints, users' watches, and the deliveries made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, str] = {}
        self._watches: dict[str, Watch] = {}
        self._ids = itertools.count(1)
        self._outbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._sender: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0

    def subscribe(self, topic: str, endpoint: str) -> None:
        """A push subscription: messages on ``topic`` are POSTed to ``endpoint``."""
        if not TOPIC.fullmatch(topic):
            raise ValueError(f"topic must look like projects/P/topics/T, got {topic!r}")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        with self._lock:
            self._endpoints[topic] = endpoint

    def watch(self, email: str, topic: str) -> Watch:
        if not TOPIC.fullmatch(topic):
            raise ValueError(f"Invalid topicName: {topic!r}")
        made = Watch(topic, int((time.time() + WATCH_DAYS * 86400) * 1000))
        with self._lock:
            self._watches[email] = made
        return made

    def stop(self, email: str) -> None:
        with self._lock:
            self._watches.pop(email, None)

    def changed(self, email: str, history_id: int) -> None:
        """The mailbox of ``email`` changed: push to its watch's endpoint, if any."""
        with self._lock:
            watch = self._watches.get(email)
            endpoint = self._endpoints.get(watch.topic) if watch else None
            number = next(self._ids)
        if watch is None or endpoint is None:
            return  # not watched, or no subscription: Pub/Sub drops the message
        self._outbox.put((endpoint, _envelope(email, history_id, watch.topic, number)))
        with self._lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send, name="push", daemon=True)
                self._sender.start()

    def _send(self) -> None:
        while True:
            endpoint, body = self._outbox.get()
            ok = any(_post(endpoint, body, try_) for try_ in range(TRIES))
            with self._lock:
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1


def _post(endpoint: str, body: bytes, try_: int) -> bool:
    """One try of a delivery (after the backoff its number asks for): True on a 2xx."""
    if try_:
        time.sleep(BACKOFF * 2 ** (try_ - 1))
    request = urllib.request.Request(
        endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return bool(200 <= answer.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _envelope(email: str, history_id: int, topic: str, number: int) -> bytes:
    data = json.dumps({"emailAddress": email, "historyId": history_id}).encode()
    published = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message = {
        "data": base64.b64encode(data).decode(),
        "messageId": str(number),
        "message_id": str(number),
        "publishTime": published,
        "publish_time": published,
    }
    subscription = topic.replace("/topics/", "/subscriptions/") + "-push"
    return json.dumps({"message": message, "subscription": subscription}).encode()
