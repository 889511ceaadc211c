"""The fleet runner publishes its cameras' events (fake Triton): up/down with reasons, crossings, zone visits,
global ids and names; a live source that drops sends down, then up when it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline_client.fleet import cli
from pipeline_client.fleet.runner import FleetContext, run_fleet
from pipeline_client.triton_client import IDENTITY_OUTPUTS
from tests.unit.client.fake_triton import FakeTriton
from tests.unit.client.test_fleet_runner import LINE, ZONE, fleet, image, write_video


class Recorder:
    def __init__(self) -> None:
        self.events: list = []
        self.lock = threading.Lock()

    def publish(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, camera) -> list[tuple]:
        return [
            (e.kind, e.payload.get("frame"), e.payload.get("reason") or e.payload.get("direction"))
            for e in self.events
            if e.camera_id == camera
        ]


def test_a_file_camera_sends_up_crossings_zone_visits_and_down(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", 6)
    config = fleet(
        [
            {"id": 1, "source": str(video), "lines": [LINE], "zones": [ZONE]},
            {"id": 3, "source": str(tmp_path / "missing.avi")},
        ]
    )
    server = FakeTriton(reid=True)
    recorder = Recorder()
    ctx = FleetContext(
        lambda _cid: server, tmp_path / "out", threading.Event(), IDENTITY_OUTPUTS, events=recorder
    )
    run_fleet(config, ctx, counts_every_s=0.05)

    # The fake's box moves right a pixel a frame: inside the zone for n = 1..3, across the door at n = 3.
    assert recorder.of(1) == [
        ("camera_up", None, "started"),
        ("zone_entered", 1, None),
        ("line_crossed", 3, "out"),
        ("zone_left", 4, None),
        ("camera_down", None, "ended"),
    ]
    crossing = next(e.payload for e in recorder.events if e.kind == "line_crossed")
    identity = (crossing["track_id"], crossing["global_id"], crossing["name"], crossing["ts"])
    assert identity == (1, 103, "Alice", 0.2)
    left = next(e.payload for e in recorder.events if e.kind == "zone_left")
    assert left["dwell_s"] == 0.2 and left["zone"] == "left"
    ((kind, _, reason),) = recorder.of(3)
    assert kind == "camera_down" and "missing.avi" in reason


def test_a_live_source_that_drops_sends_down_then_up(tmp_path: Path) -> None:
    opened: list[int] = []

    def open_live(_target: str | int) -> Iterator[np.ndarray]:
        opened.append(1)
        if len(opened) <= 2:
            for k in range(5):
                yield image(k)
                time.sleep(0.01)
            raise OSError("connection reset")
        raise OSError("cannot open")

    recorder = Recorder()
    ctx = FleetContext(
        lambda _cid: FakeTriton(),
        tmp_path / "out",
        threading.Event(),
        open_live=open_live,
        live_options={"first_wait_s": 0.01, "max_wait_s": 0.02, "give_up_s": 0.3},
        events=recorder,
    )
    run_fleet(fleet([{"id": 9, "source": "rtsp://cam/live"}]), ctx, counts_every_s=0.05)

    states = [(kind, reason) for kind, _, reason in recorder.of(9)]
    assert states[0] == ("camera_up", "started")
    assert states[1:4] == [
        ("camera_down", "source lost: connection reset"),
        ("camera_up", "reconnected"),
        ("camera_down", "source lost: connection reset"),  # then it never comes back: no more down/up
    ]
    assert states[4][0] == "camera_down" and "no frame for" in states[4][1] and len(states) == 5


def test_cli_flags_send_events_and_the_report_counts_them(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: FakeTriton())
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    video = write_video(tmp_path / "v.avi", 3)
    # Nobody listens there: the events are dropped and counted; the cameras are fine (exit 0).
    args = ["--source", str(video), "--out-dir", str(tmp_path / "out"), "--webhook", "http://127.0.0.1:9/x"]
    config = tmp_path / "site.yaml"
    events = "events: {webhook: {url: 'http://h/'}, flush_s: 0.3}"
    config.write_text(f"cameras: [{{id: 1, source: {video}}}]\n{events}\n")
    assert cli.main(["--config", str(config), *args[2:]]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "events webhook http://127.0.0.1:9: 0 delivered, 2 dropped" in out  # camera up and down
    bad = [*args[:2], "--out-dir", str(tmp_path / "o2"), "--mqtt", "bad host"]
    assert cli.main(bad) == cli.EXIT_UNAVAILABLE
    assert "--mqtt.host" in capsys.readouterr().err
