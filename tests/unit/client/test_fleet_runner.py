"""The fleet runner with the fake Triton: every camera in one process, outputs in DIR, failures isolated."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline_client.fleet import cli
from pipeline_client.fleet.config import parse_config
from pipeline_client.fleet.runner import COUNTS_FILE, FleetContext, run_fleet
from pipeline_client.triton_client import CameraStream
from tests.unit.client.fake_triton import FakeTriton

SIZE = (64, 48)


class SlowTriton(FakeTriton):
    """The fake server, taking ``delay_s`` per frame."""

    delay_s: float = 0.0

    def infer(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return super().infer(*args, **kwargs)


def image(k: int) -> np.ndarray:
    return np.full((SIZE[1], SIZE[0], 3), (k * 7) % 256, np.uint8)


def write_video(path: Path, frames: int, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    for k in range(frames):
        writer.write(image(k))
    writer.release()
    return path


def write_frame_dir(path: Path, frames: int) -> Path:
    path.mkdir()
    for k in range(frames):
        cv2.imwrite(str(path / f"{k:04d}.png"), image(k))
    return path


def fleet(cameras: list[dict]) -> object:
    return parse_config({"server": "fake:1", "cameras": cameras})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# The fake answers one box [n, 0, n + 10, 20] (n: the sequence's frame count), id 1: the bottom-centre
# is (n + 5, 20), moving right one pixel a frame.
LINE = {"name": "door", "points": [[7.5, 0], [7.5, 30]]}  # crossed between n = 2 and n = 3, ending right
ZONE = {"name": "left", "polygon": [[0, 0], [8, 0], [8, 30], [0, 30]]}  # n = 1, 2, 3 inside (x = 8: border)


def test_three_cameras_a_failing_one_does_not_stop_the_others(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", 6)
    frames = write_frame_dir(tmp_path / "frames", 4)
    config = fleet(
        [
            {
                "id": 1,
                "source": str(video),
                "tracker": {"track_buffer": 60},
                "lines": [LINE],
                "zones": [ZONE],
            },
            {
                "id": "gate-3",
                "source": str(frames),
                "fps": 5,
                "tracker": {"mot20": True, "match_thresh": 0.9},
            },
            {"id": 3, "source": str(tmp_path / "missing.avi")},
        ]
    )
    servers = {1: FakeTriton(), "gate-3": FakeTriton(), 3: FakeTriton()}
    out = tmp_path / "out"
    reports = run_fleet(
        config, FleetContext(servers.__getitem__, out, threading.Event()), counts_every_s=0.05
    )

    assert [(r.camera_id, r.frames, r.errors, r.failed is None) for r in reports] == [
        (1, 6, 0, True),
        ("gate-3", 4, 0, True),
        (3, 0, 0, False),
    ]
    assert "missing.avi" in reports[2].failed
    # START carries the tracker settings (frame_rate: the file's own rate, else the camera's fps).
    video_server, dir_server = servers[1], servers["gate-3"]
    assert video_server.parameters[0] == {"frame_rate": 10.0, "track_buffer": 60, "frame_index": 0}
    assert dir_server.parameters[0] == {
        "frame_rate": 5.0,
        "mot20": True,
        "match_thresh": 0.9,
        "frame_index": 0,
    }
    assert [p for p in video_server.parameters[1:]] == [{"frame_index": i} for i in range(1, 6)]
    assert [(start, end) for _, start, end, _ in dir_server.calls] == [
        (True, False),
        (False, False),
        (False, False),
        (False, True),
    ]
    # Outputs: one JSON line and one MOT row per frame, ts from the frame rate; counts of camera 1.
    lines = read_jsonl(out / "1.jsonl")
    assert [(r["frame"], r["ts"]) for r in lines] == [(k + 1, k / 10) for k in range(6)]
    assert lines[0]["tracks"] == [
        {"id": 1, "box": [1.0, 0.0, 11.0, 20.0], "score": 0.9, "global_id": None, "name": None}
    ]
    assert [r["frame"] for r in read_jsonl(out / "gate-3.jsonl")] == [1, 2, 3, 4]
    assert len((out / "1.txt").read_text().splitlines()) == 6
    assert not (out / "3.jsonl").exists()  # it failed before opening its outputs
    counts = json.loads((out / COUNTS_FILE).read_text())
    assert counts == {
        "1": {"door": {"in": 0, "out": 1}, "left": {"occupancy": 0, "entries": 1, "mean_dwell_s": 0.2}},
        "gate-3": {},
        "3": {},
    }
    assert not list(out.glob(".*tmp"))


def test_a_restarted_sequence_gets_the_tracker_settings_again(tmp_path: Path) -> None:
    server = FakeTriton()
    stream = CameraStream(server, 4, start_parameters={"frame_rate": 12.0, "track_thresh": 0.6})
    stream.answer(b"a")
    server.live.clear()  # the server reclaimed the sequence
    answer = stream.answer(b"b")
    assert answer.restarted
    assert server.parameters == [
        {"frame_rate": 12.0, "track_thresh": 0.6, "frame_index": 0},
        {"frame_index": 1},
        {"frame_rate": 12.0, "track_thresh": 0.6, "frame_index": 1},
    ]
    with pytest.raises(ValueError, match="frame_index"):
        CameraStream(server, 4, start_parameters={"frame_index": 3})


def test_a_live_source_newest_frame_wins_and_reconnects(tmp_path: Path) -> None:
    opened: list[int] = []

    def open_live(target: str | int) -> Iterator[np.ndarray]:
        assert target == "rtsp://cam/live"
        opened.append(len(opened))
        if len(opened) == 1:
            for k in range(30):
                yield image(k)
                time.sleep(0.002)
            return  # the stream ends: reconnect
        if len(opened) == 2:
            for k in range(10):
                yield image(k)
            raise OSError("connection reset")
        raise OSError("cannot open")

    server = SlowTriton()
    server.delay_s = 0.02  # slower than the source: frames pile up unless dropped
    config = fleet([{"id": 9, "source": "rtsp://cam/live", "lines": [LINE]}])
    ctx = FleetContext(
        lambda _cid: server,
        tmp_path / "out",
        threading.Event(),
        open_live=open_live,
        live_options={"first_wait_s": 0.01, "max_wait_s": 0.02, "give_up_s": 0.4},
    )
    (report,) = run_fleet(config, ctx, counts_every_s=0.05)

    assert report.live and report.failed is not None and "no frame for" in report.failed
    assert len(opened) >= 3 and report.reconnects >= 2
    assert report.dropped > 0 and report.frames + report.dropped == 40
    assert not any(end for _, _, end, _ in server.calls)
    frames = [r["frame"] for r in read_jsonl(tmp_path / "out" / "9.jsonl")]
    assert len(frames) == report.frames and frames == sorted(frames)
    # Each frame is sent with its position in the source (the JSON line's 1-based frame - 1): gaps where
    # frames were dropped, each announced by the index sent before it; the START says none.
    assert server.frame_indices == [f - 1 for f in frames] and len(set(frames)) == len(frames)
    assert any(b - a > 1 for a, b in itertools.pairwise(frames))
    sent = server.frame_indices
    assert "previous_frame_index" not in server.parameters[0] and server.calls[0][1]
    for before, now, parameters in zip(sent, sent[1:], server.parameters[1:]):
        assert parameters.get("previous_frame_index") == (before if now > before + 1 else None)
    assert frames[-1] == 40  # the newest frame of the last connection was sent
    assert json.loads((tmp_path / "out" / COUNTS_FILE).read_text())["9"]["door"]["out"] == 1


def test_sigterm_stops_every_camera_and_writes_the_outputs_whole(tmp_path: Path, monkeypatch) -> None:
    frames = write_frame_dir(tmp_path / "frames", 200)
    server = SlowTriton()
    server.delay_s = 0.01
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: server)
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    config = tmp_path / "site.yaml"
    config.write_text(
        f"cameras:\n  - id: 1\n    source: {frames}\n    zones:\n"
        "      - {name: all, polygon: [[0, 0], [999, 0], [999, 999], [0, 999]]}\n"
    )
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    status = cli.main(["--config", str(config), "--out-dir", str(tmp_path / "out")])

    assert status == cli.EXIT_OK
    lines = read_jsonl(tmp_path / "out" / "1.jsonl")
    assert 0 < len(lines) < 200
    counts = json.loads((tmp_path / "out" / COUNTS_FILE).read_text())
    assert counts == {"1": {"all": {"occupancy": 1, "entries": 1, "mean_dwell_s": lines[-1]["ts"]}}}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_exit_status(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: FakeTriton())
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    video = write_video(tmp_path / "v.avi", 3)
    out = str(tmp_path / "out")
    assert cli.main(["--source", str(video), "--out-dir", out]) == cli.EXIT_OK
    assert cli.main(["--source", str(video), "--source", str(tmp_path / "nope.avi"), "--out-dir", out]) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - {id: 1, source: a.avi, lines: [{name: d, points: [[0, 0]]}]}\n")
    assert cli.main(["--config", str(bad), "--out-dir", out]) == cli.EXIT_UNAVAILABLE
    with pytest.raises(SystemExit):
        cli.main(["--out-dir", out])  # neither --config nor --source


def test_a_live_source_whose_read_blocks_fails_the_camera(tmp_path: Path) -> None:
    release = threading.Event()

    def open_live(_target: str | int) -> Iterator[np.ndarray]:
        yield image(0)
        release.wait(5.0)  # a network read that hangs
        yield image(1)

    server = FakeTriton()
    config = fleet(
        [
            {"id": 5, "source": "http://cam/mjpeg"},
            {"id": 6, "source": str(write_video(tmp_path / "v.avi", 3))},
        ]
    )
    ctx = FleetContext(
        lambda _cid: server,
        tmp_path / "out",
        threading.Event(),
        open_live=open_live,
        live_options={"give_up_s": 0.3},
    )
    began = time.monotonic()
    live, video = run_fleet(config, ctx, counts_every_s=0.05)
    release.set()
    assert time.monotonic() - began < 3.0
    assert live.frames == 1 and "stalls" in live.failed
    assert video.frames == 3 and video.failed is None


def test_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "(default: 60.0)" in capsys.readouterr().out
