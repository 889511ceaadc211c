"""Delivering the fleet's events without ever holding up a camera: a bounded queue and one thread per sink.

``publish`` never blocks: an event that finds its sink's queue full is dropped and counted. The sink's
thread sends one event at a time and retries it, with backoff, until it is delivered: an MQTT broker that
is down, slow or killed is reconnected (a fresh session each time; QoS 1, so an event whose PUBACK was lost
may arrive twice); a webhook answering 5xx, 408 or 429, timing out or refusing the connection is retried;
one answering another 4xx rejected that event (dropped, counted, not retried). ``close`` gives the sinks
``flush_s`` to deliver what is queued; what is left then counts as dropped.

MQTT through paho-mqtt (the registry's maintained client; its own network thread and unbounded internal
queue are not used: our thread drives ``loop()`` and waits for each PUBACK, so what is delivered is
known). The webhook through the standard library's urllib (one POST per event needs no more).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt

from pipeline_client.fleet.events import Event, EventsConfig, MqttConfig, WebhookConfig, topic
from pipeline_client.triton_client import backoff_waits

LOGGER = logging.getLogger(__name__)

RETRY_FIRST_WAIT_S = 0.2
RETRY_MAX_WAIT_S = 5.0
MQTT_CONNECT_TIMEOUT_S = 5.0
MQTT_ACK_TIMEOUT_S = 5.0
MQTT_KEEPALIVE_S = 30
POLL_S = 0.05
_RETRY_STATUS = frozenset({408, 429})


class DeliveryError(RuntimeError):
    """This attempt failed; the event is tried again."""


class RejectedError(RuntimeError):
    """The receiver refused this event for good (e.g. HTTP 400); it is dropped."""


class Transport(Protocol):
    label: str

    def send(self, event: Event) -> None:
        """Deliver one event or raise DeliveryError / RejectedError / OSError."""

    def close(self) -> None: ...


@dataclass
class SinkStats:
    """A sink's tally: ``queued`` accepted, ``delivered``, ``rejected`` by the receiver, ``overflow``
    dropped because the queue was full, ``failures`` attempts that failed."""

    queued: int = 0
    delivered: int = 0
    rejected: int = 0
    overflow: int = 0
    failures: int = 0

    @property
    def dropped(self) -> int:
        """Every event that was not delivered: overflowed, rejected, or still waiting."""
        return self.overflow + self.queued - self.delivered

    def line(self, label: str) -> str:
        tally = f"{self.delivered} delivered, {self.dropped} dropped, {self.failures} failed attempts"
        return f"events {label}: {tally}"


def json_payload(event: Event) -> bytes:
    return json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


class MqttTransport:
    """One MQTT connection, opened when needed and dropped on any failure (the next send reconnects)."""

    def __init__(
        self,
        config: MqttConfig,
        connect_timeout_s: float = MQTT_CONNECT_TIMEOUT_S,
        ack_timeout_s: float = MQTT_ACK_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.label = config.label
        self.connect_timeout_s, self.ack_timeout_s = connect_timeout_s, ack_timeout_s
        self._client: mqtt.Client | None = None

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, clean_session=True)
        client.connect_timeout = self.connect_timeout_s
        if self.config.username is not None:
            client.username_pw_set(self.config.username, self.config.password)
        answer: list[mqtt.ReasonCode] = []
        client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
        try:
            client.connect(self.config.host, self.config.port, MQTT_KEEPALIVE_S)
            deadline = time.monotonic() + self.connect_timeout_s
            while not answer:
                if client.loop(POLL_S) != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                    raise DeliveryError("no CONNACK from the broker")
        except Exception:
            with contextlib.suppress(Exception):
                client.disconnect()
            raise
        if answer[0].is_failure:
            client.disconnect()
            raise DeliveryError(f"the broker refused the connection: {answer[0]}")
        return client

    def send(self, event: Event) -> None:
        if self._client is None:
            self._client = self._connect()
        client = self._client
        try:
            info = client.publish(topic(self.config.topic_prefix, event), json_payload(event), qos=1)
            deadline = time.monotonic() + self.ack_timeout_s
            while not info.is_published():
                rc = client.loop(POLL_S)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    raise DeliveryError(f"connection lost ({mqtt.error_string(rc)})")
                if time.monotonic() > deadline:
                    raise DeliveryError(f"no PUBACK within {self.ack_timeout_s:g} s")
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the connection is gone anyway
                client.disconnect()

    def close(self) -> None:
        self._drop()


class WebhookTransport:
    """POSTs each event as JSON to the URL."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.label = config.label

    def send(self, event: Event) -> None:
        request = urllib.request.Request(
            self.config.url,
            data=json_payload(event),
            method="POST",
            headers={**self.config.headers, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in _RETRY_STATUS:
                raise RejectedError(f"HTTP {error.code}") from None
            raise DeliveryError(f"HTTP {error.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise DeliveryError(str(getattr(error, "reason", error)) or type(error).__name__) from None

    def close(self) -> None:
        pass


class QueuedSink:
    """A bounded queue of events and the one thread that delivers them through ``transport``."""

    def __init__(
        self,
        transport: Transport,
        queue_size: int,
        waits: Callable[[], Iterator[float]] = lambda: backoff_waits(RETRY_FIRST_WAIT_S, RETRY_MAX_WAIT_S),
    ) -> None:
        self.transport = transport
        self.label = transport.label
        self.stats = SinkStats()
        self._waits = waits
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"events-{self.label}", daemon=True)
        self._thread.start()

    def publish(self, event: Event) -> bool:
        """Queue ``event`` without blocking; False (and counted) when the queue is full or the sink closed."""
        with self._lock:
            if self._abort.is_set():
                self.stats.overflow += 1
                return False
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.stats.overflow += 1
                return False
            self.stats.queued += 1
            return True

    def _run(self) -> None:
        while not self._abort.is_set():
            try:
                event = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        waits = self._waits()
        failing_since: float | None = None
        while not self._abort.is_set():
            try:
                self.transport.send(event)
            except RejectedError as error:
                LOGGER.warning("events %s: %s event rejected (%s); dropped", self.label, event.kind, error)
                with self._lock:
                    self.stats.rejected += 1  # queued, never delivered: among the dropped
                return
            except Exception as error:  # noqa: BLE001 - any failure: retry with backoff
                with self._lock:
                    self.stats.failures += 1
                wait = next(waits)
                if failing_since is None:
                    failing_since = time.monotonic()
                    LOGGER.warning(
                        "events %s: delivery failed (%s); retrying, backing off", self.label, error
                    )
                else:
                    LOGGER.debug("events %s: still failing (%s); next try in %.1f s", self.label, error, wait)
                self._abort.wait(wait)
                continue
            with self._lock:
                self.stats.delivered += 1
            if failing_since is not None:
                LOGGER.info(
                    "events %s: delivering again after %.1f s", self.label, time.monotonic() - failing_since
                )
            return

    def begin_close(self) -> None:
        """Let the thread end once the queue is empty (it goes on delivering until then)."""
        self._closing.set()

    def close(self, flush_s: float) -> SinkStats:
        """Deliver what is queued within ``flush_s``, then stop; returns the final tally (a copy)."""
        self.begin_close()
        self._thread.join(timeout=flush_s)
        with self._lock:
            self._abort.set()
            final = SinkStats(**vars(self.stats))
        self._thread.join(timeout=POLL_S * 4)
        if self._thread.is_alive():
            LOGGER.warning("events %s: still sending after %.1f s; left to finish alone", self.label, flush_s)
        else:
            self.transport.close()
        if final.dropped:
            LOGGER.warning("events %s: %d event(s) not delivered", self.label, final.dropped)
        return final


class EventBus:
    """Every configured sink; ``publish`` hands an event to each (never blocking)."""

    def __init__(self, sinks: Iterable[QueuedSink], flush_s: float) -> None:
        self.sinks = list(sinks)
        self.flush_s = flush_s
        self.final: dict[str, SinkStats] | None = None

    @classmethod
    def of(cls, config: EventsConfig) -> EventBus:
        transports: list[Transport] = []
        if config.mqtt is not None:
            transports.append(MqttTransport(config.mqtt))
        if config.webhook is not None:
            transports.append(WebhookTransport(config.webhook))
        return cls((QueuedSink(t, config.queue_size) for t in transports), config.flush_s)

    def publish(self, event: Event) -> None:
        for sink in self.sinks:
            sink.publish(event)

    def publish_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.publish(event)

    def stats(self) -> dict[str, SinkStats]:
        """Each sink's tally now (the final one once closed)."""
        return self.final if self.final is not None else {s.label: s.stats for s in self.sinks}

    def close(self) -> dict[str, SinkStats]:
        """Flush and stop every sink (sharing one ``flush_s``); returns their final tallies."""
        if self.final is None:
            deadline = time.monotonic() + self.flush_s
            for sink in self.sinks:  # every sink flushes at once
                sink.begin_close()
            self.final = {s.label: s.close(max(deadline - time.monotonic(), POLL_S)) for s in self.sinks}
        return self.final

    def lines(self) -> list[str]:
        return [stats.line(label) for label, stats in self.stats().items()]
