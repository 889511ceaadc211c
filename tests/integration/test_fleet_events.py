"""``pipeline-track-cameras`` events against a real tritonserver, a real Mosquitto 2.0.11 (Debian 12's,
started here on a free port) with a real paho subscriber, and a real local http.server as the webhook:
the events match the counts; a broker killed mid-run holds up no camera, and its events are delivered
after it is back or counted as dropped."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline_server.server import free_ports
from tests.integration.mosquitto import BINARY, Broker, Subscriber
from tests.integration.test_fleet import FRAMES, LINES, ZONE, sources  # noqa: F401 - sources: a fixture
from tests.unit.client.test_fleet_delivery import webhook_server

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason="no mosquitto: run `make mosquitto`")


def site(server: str, video: Path, directory: Path, events: dict) -> dict:
    lines = [{"name": name, "points": points} for name, points in LINES.items()]
    return {
        "server": server,
        "cameras": [
            {"id": 7, "source": str(video), "lines": lines, "zones": [{"name": "left", "polygon": ZONE}]},
            {"id": "hall-2", "source": str(directory), "fps": 10, "lines": lines},
        ],
        "events": events,
    }


def run_fleet(tmp_path: Path, config: dict, *extra: str) -> subprocess.Popen:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "pipeline_client.fleet.cli", "--config", str(path), "--out-dir"]
    return subprocess.Popen(
        [*command, str(tmp_path / "out"), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def key(payload: dict) -> tuple:
    """What identifies an event (``time`` aside)."""
    return tuple(sorted((k, str(v)) for k, v in payload.items() if k != "time"))


def expected_from_counts(out: Path) -> Counter:
    """``(camera, event, line or zone, direction)`` -> how many, from counts.json."""
    counts = json.loads((out / "counts.json").read_text())
    want: Counter = Counter()
    for camera, items in counts.items():
        for name, value in items.items():
            if "in" in value:
                want[(camera, "line_crossed", name, "in")] = value["in"]
                want[(camera, "line_crossed", name, "out")] = value["out"]
            else:
                want[(camera, "zone_entered", name, None)] = value["entries"]
    return +want


def tally(payloads: list[dict]) -> Counter:
    return Counter(
        (str(p["camera"]), p["event"], p.get("line") or p.get("zone"), p.get("direction"))
        for p in payloads
        if p["event"] in ("line_crossed", "zone_entered")
    )


def test_events_reach_the_broker_and_the_webhook(triton_server, sources, tmp_path: Path) -> None:  # noqa: F811
    video, directory = sources
    (port,) = free_ports(1)
    broker = Broker(port, tmp_path / "broker")
    broker.start()
    try:
        subscriber = Subscriber(port, "site/#")
        with webhook_server(500, 500, 200) as hook:
            url = f"http://127.0.0.1:{hook.server_address[1]}/events"
            events = {
                "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": "site"},
                "webhook": {"url": url},
            }
            fleet = run_fleet(tmp_path, site(triton_server.grpc_url, video, directory, events))
            stdout, stderr = fleet.communicate(timeout=120)
            delivered = [body for status, body, _ in hook.bodies if status == 200]
        time.sleep(0.2)
        received = subscriber.received()
        subscriber.close()
    finally:
        broker.kill()
    assert fleet.returncode == 0, stdout + stderr
    assert f"camera 7: {FRAMES} frames, 0 errors" in stdout

    want = expected_from_counts(tmp_path / "out")
    assert sum(want.values()) > 0
    assert tally([p for _, p in received]) == want
    assert tally(delivered) == want
    # Every event arrived once on each sink (the webhook's first two 500s were retried), on its topic.
    assert sorted(key(p) for _, p in received) == sorted(key(p) for p in delivered)
    assert all(t == f"site/{p['camera']}/{p['event']}" for t, p in received)
    states = [(p["camera"], p["event"], p["reason"]) for _, p in received if p["event"].startswith("camera_")]
    assert sorted(states, key=str) == sorted(
        [(7, "camera_up", "started"), (7, "camera_down", "ended")]
        + [("hall-2", "camera_up", "started"), ("hall-2", "camera_down", "ended")],
        key=str,
    )
    crossing = next(p for _, p in received if p["event"] == "line_crossed")
    assert set(crossing) == {
        "event",
        "camera",
        "line",
        "track_id",
        "global_id",
        "name",
        "direction",
        "frame",
        "ts",
        "time",
    }
    records = [
        json.loads(x) for x in (tmp_path / "out" / f"{crossing['camera']}.jsonl").read_text().splitlines()
    ]
    record = records[crossing["frame"] - 1]
    assert crossing["track_id"] in [t["id"] for t in record["tracks"]] and crossing["ts"] == record["ts"]
    n = len(received)
    assert f"events mqtt://127.0.0.1:{port}: {n} delivered, 0 dropped" in stdout
    assert (
        f"events webhook http://127.0.0.1:{hook.server_address[1]}: {n} delivered, 0 dropped, 2 failed"
        in stdout
    )


def test_a_broker_killed_mid_run_holds_up_no_camera(triton_server, sources, tmp_path: Path) -> None:  # noqa: F811
    video, directory = sources
    (port,) = free_ports(1)
    broker = Broker(port, tmp_path / "broker")
    broker.start()
    try:
        subscriber = Subscriber(port)
        with webhook_server(200) as hook:  # the webhook sees every event: the reference
            url = f"http://127.0.0.1:{hook.server_address[1]}/"
            events = {"mqtt": {"host": "127.0.0.1", "port": port}, "webhook": {"url": url}, "flush_s": 10}
            fleet = run_fleet(tmp_path, site(triton_server.grpc_url, video, directory, events))
            deadline = time.monotonic() + 60
            while not subscriber.received() and time.monotonic() < deadline:
                time.sleep(0.01)
            broker.kill()  # SIGKILL at the first event
            before = len(subscriber.received())
            killed_at = time.monotonic()
            time.sleep(1.0)
            broker.start()  # the same port: the fleet reconnects, the subscriber too
            stdout, stderr = fleet.communicate(timeout=120)
            everything = [body for _, body, _ in hook.bodies]
        time.sleep(0.3)
        received = subscriber.received()
        subscriber.close()
    finally:
        broker.kill()
    assert fleet.returncode == 0, stdout + stderr  # the cameras were fine
    assert (
        f"camera 7: {FRAMES} frames, 0 errors" in stdout
        and f"camera hall-2: {FRAMES} frames, 0 errors" in stdout
    )
    for camera in ("7", "hall-2"):  # tracking went on: every frame written
        assert len((tmp_path / "out" / f"{camera}.jsonl").read_text().splitlines()) == FRAMES
    line = next(x for x in stdout.splitlines() if x.startswith(f"events mqtt://127.0.0.1:{port}:"))
    delivered, dropped = (int(line.split(": ")[1].split(", ")[k].split()[0]) for k in (0, 1))
    assert delivered + dropped == len(everything) and delivered > before
    # What arrived after the kill came through a reconnection; nothing arrived that was not sent.
    assert len(received) > before and {key(p) for _, p in received} <= {key(p) for p in everything}
    assert any(p["event"] == "camera_down" for _, p in received[before:])
    assert "delivery failed" in stderr and "delivering again" in stderr
    assert time.monotonic() - killed_at < 60
