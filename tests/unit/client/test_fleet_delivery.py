"""Event delivery never holds up a camera: bounded queues, retries with backoff, counted drops; the webhook
against a real local http.server (answering 200, 500, 400, or never)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pipeline_client.fleet.delivery import (
    DeliveryError,
    EventBus,
    MqttTransport,
    QueuedSink,
    RejectedError,
    WebhookTransport,
)
from pipeline_client.fleet.events import MqttConfig, WebhookConfig, camera_event
from pipeline_server.server import free_ports


def fast_waits() -> Iterator[float]:
    while True:
        yield 0.01


class FakeTransport:
    """Fails its first ``failures`` sends, rejects kinds in ``reject``, blocks while ``gate`` is clear."""

    label = "fake"

    def __init__(self, failures: int = 0, gate: threading.Event | None = None) -> None:
        self.failures = failures
        self.gate = gate
        self.sent: list[str] = []
        self.attempts = 0
        self.reject: set[str] = set()

    def send(self, event) -> None:
        self.attempts += 1
        if self.gate is not None:
            self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise DeliveryError("down")
        if event.payload["reason"] in self.reject:
            raise RejectedError("HTTP 400")
        self.sent.append(event.payload["reason"])

    def close(self) -> None:
        pass


def events(n: int, prefix: str = "e") -> list:
    return [camera_event(1, True, f"{prefix}{k}") for k in range(n)]


def test_events_are_delivered_in_order_after_retries() -> None:
    transport = FakeTransport(failures=3)
    sink = QueuedSink(transport, queue_size=10, waits=fast_waits)
    for event in events(5):
        assert sink.publish(event)
    stats = sink.close(flush_s=5)
    assert transport.sent == [f"e{k}" for k in range(5)]
    assert (stats.delivered, stats.dropped, stats.failures) == (5, 0, 3)


def test_a_stalled_sink_never_blocks_publish_and_counts_what_it_drops() -> None:
    gate = threading.Event()  # the transport hangs until the end
    sink = QueuedSink(FakeTransport(gate=gate), queue_size=3, waits=fast_waits)
    began = time.monotonic()
    accepted = [sink.publish(event) for event in events(100)]
    assert time.monotonic() - began < 0.5  # never waited for the transport
    assert sum(accepted) in (3, 4)  # the queue, plus the one its thread took
    began = time.monotonic()
    stats = sink.close(flush_s=0.3)
    assert time.monotonic() - began < 1.5  # close waits flush_s, not for the hung send
    assert (stats.delivered, stats.dropped, stats.overflow) == (0, 100, 100 - sum(accepted))
    gate.set()
    assert not sink.publish(camera_event(1, True, "late"))  # closed: counted, not queued


def test_a_rejected_event_is_dropped_and_the_next_goes_on() -> None:
    transport = FakeTransport()
    transport.reject = {"e1"}
    sink = QueuedSink(transport, queue_size=10, waits=fast_waits)
    for event in events(3):
        sink.publish(event)
    stats = sink.close(flush_s=5)
    assert transport.sent == ["e0", "e2"]
    assert (stats.delivered, stats.rejected, stats.dropped) == (2, 1, 1)


def test_the_bus_hands_every_event_to_every_sink_and_reports_them() -> None:
    a, b = FakeTransport(), FakeTransport(failures=1000)
    b.label = "down"
    bus = EventBus([QueuedSink(a, 10, fast_waits), QueuedSink(b, 10, fast_waits)], flush_s=0.3)
    bus.publish_all(events(4))
    final = bus.close()
    assert a.sent == ["e0", "e1", "e2", "e3"] and b.sent == []
    assert (final["fake"].delivered, final["down"].dropped) == (4, 4)
    assert bus.lines()[1].startswith("events down: 0 delivered, 4 dropped")
    assert bus.close() is final  # closing twice changes nothing


def test_mqtt_to_a_port_nobody_listens_on_is_a_retryable_failure() -> None:
    (port,) = free_ports(1)
    transport = MqttTransport(MqttConfig("127.0.0.1", port), connect_timeout_s=1)
    with pytest.raises((DeliveryError, OSError)):
        transport.send(camera_event(1, True, "x"))
    transport.close()


class Hook(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next status of ``server.statuses`` (repeating the last); ``None``: never
    answers (holds the connection until the test ends)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        with server.lock:
            status = server.statuses[min(server.calls, len(server.statuses) - 1)]
            server.calls += 1
            server.bodies.append((status, json.loads(body), dict(self.headers)))
        if status is None:
            server.release.wait(10)
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def webhook_server(*statuses: int | None) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.statuses, server.calls, server.bodies = list(statuses), 0, []
    server.lock, server.release = threading.Lock(), threading.Event()
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def hook_sink(server, timeout_s: float = 2.0, queue_size: int = 10) -> QueuedSink:
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    config = WebhookConfig(url, timeout_s, {"Authorization": "Bearer k"})
    return QueuedSink(WebhookTransport(config), queue_size, fast_waits)


def test_webhook_posts_json_with_its_headers() -> None:
    with webhook_server(200) as server:
        sink = hook_sink(server)
        for event in events(2):
            sink.publish(event)
        stats = sink.close(flush_s=5)
    assert (stats.delivered, stats.dropped) == (2, 0)
    assert [body["reason"] for _, body, _ in server.bodies] == ["e0", "e1"]
    assert server.bodies[0][2]["Authorization"] == "Bearer k"
    assert server.bodies[0][2]["Content-Type"] == "application/json"


def test_webhook_answering_500_is_retried_until_it_answers_200() -> None:
    with webhook_server(500, 500, 503, 200) as server:
        sink = hook_sink(server)
        for event in events(2):
            sink.publish(event)
        stats = sink.close(flush_s=5)
    assert (stats.delivered, stats.dropped, stats.failures) == (2, 0, 3)
    assert [s for s, _, _ in server.bodies] == [500, 500, 503, 200, 200]


def test_webhook_answering_400_rejects_the_event() -> None:
    with webhook_server(400, 200) as server:
        sink = hook_sink(server)
        for event in events(2):
            sink.publish(event)
        stats = sink.close(flush_s=5)
    assert (stats.delivered, stats.rejected, stats.dropped) == (1, 1, 1)


def test_webhook_that_never_answers_times_out_and_its_events_count_as_dropped() -> None:
    with webhook_server(None) as server:
        sink = hook_sink(server, timeout_s=0.2)
        for event in events(3):
            sink.publish(event)
        began = time.monotonic()
        stats = sink.close(flush_s=0.8)
        assert time.monotonic() - began < 2.0
        assert server.calls >= 2  # timed out and tried again
    assert (stats.delivered, stats.dropped) == (0, 3) and stats.failures >= 2
