"""Annotated H.264 videos: browser-playable (h264, yuv420p, MP4), every frame, at its time; a killed writer
still leaves a decodable file; the fleet writes one per camera, finished on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline_client.annotate import VideoSink
from pipeline_client.fleet import cli
from pipeline_client.fleet.config import parse_config
from pipeline_client.fleet.runner import FleetContext, run_fleet
from pipeline_client.fleet.video import LINE_COLOR, ZONE_COLOR, draw_counting
from tests.unit.client.fake_triton import FakeTriton
from tests.unit.client.test_fleet_runner import (
    LINE,
    ZONE,
    SlowTriton,
    read_jsonl,
    write_frame_dir,
    write_video,
)


def probe(path: Path) -> tuple[str, str, str, list[float]]:
    """(format, codec, pixel format, every decoded frame's time)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
        return container.format.name, stream.codec_context.name, stream.codec_context.pix_fmt, times


def frame(k: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, (k * 3) % size[0]] = 255
    return image


def test_video_sink_writes_h264_yuv420p_mp4_at_the_frames_times(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "a.mp4", fps=10)
    for k in range(12):
        sink.write(frame(k, (97, 65)))  # odd sizes lose a column and a row
    sink.close()
    name, codec, pix_fmt, times = probe(tmp_path / "a.mp4")
    assert ("mp4" in name, codec, pix_fmt) == (True, "h264", "yuv420p")
    assert times == pytest.approx([k / 10 for k in range(12)])
    with av.open(str(tmp_path / "a.mp4")) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (96, 64)
    live = VideoSink(tmp_path / "b.mp4", fps=10)
    for ts in (0.5, 0.55, 0.9, 0.9):  # a live camera: gaps, and a repeated time still moves on
        live.write(frame(0), ts)
    live.close()
    assert probe(tmp_path / "b.mp4")[3] == pytest.approx([0.0, 0.05, 0.4, 0.401])  # from the first frame


KILLED = """
import os, signal, sys
import numpy as np
from pipeline_client.annotate import VideoSink
sink = VideoSink(sys.argv[1], fps=10)
for k in range(35):
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, k] = 255
    sink.write(image)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writer_leaves_a_decodable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    result = subprocess.run([sys.executable, "-c", KILLED, str(path)], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL
    _, codec, _, times = probe(path)
    # A fragment per second (a keyframe every 10 frames), written out as each closes: all but the last.
    assert codec == "h264" and times == pytest.approx([k / 10 for k in range(30)])


def test_draw_counting_draws_lines_and_zones_on_a_copy() -> None:
    line = {"name": "door", "points": [[100, 20], [100, 180]]}
    zone = {"name": "queue", "polygon": [[20, 120], [80, 120], [80, 180], [20, 180]]}
    camera = parse_config({"cameras": [{"id": 1, "source": "a.avi", "lines": [line], "zones": [zone]}]})
    blank = np.zeros((200, 200, 3), np.uint8)
    out = draw_counting(blank, camera.cameras[0], {"door": {"in": 2, "out": 1}})
    assert not blank.any()
    np.testing.assert_allclose(out[170, 100], LINE_COLOR, atol=60)  # below the labels
    np.testing.assert_allclose(out[170, 20], ZONE_COLOR, atol=60)
    assert not out[170, 50].any() and not out[100, 160].any()  # inside the zone, away from the line


def test_the_fleet_writes_a_video_per_camera(tmp_path: Path) -> None:
    config = parse_config(
        {
            "server": "fake:1",
            "cameras": [
                {"id": 1, "source": str(write_video(tmp_path / "v.avi", 6)), "lines": [LINE]},
                {"id": "b/2", "source": str(write_frame_dir(tmp_path / "d", 4)), "fps": 5},
            ],
        }
    )
    out = tmp_path / "out"
    ctx = FleetContext(lambda _cid: FakeTriton(), out, threading.Event(), video=True)
    reports = run_fleet(config, ctx, counts_every_s=0.05)
    assert [r.frames for r in reports] == [6, 4]
    assert probe(out / "1.mp4")[1:] == ("h264", "yuv420p", pytest.approx([k / 10 for k in range(6)]))
    assert probe(out / "b_2.mp4")[3] == pytest.approx([k / 5 for k in range(4)])


def test_sigterm_finishes_the_video(tmp_path: Path, monkeypatch) -> None:
    frames = write_frame_dir(tmp_path / "frames", 300)
    server = SlowTriton()
    server.delay_s = 0.01
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: server)
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    config = tmp_path / "site.yaml"
    config.write_text(f"cameras: [{{id: 1, source: {frames}, fps: 10}}]\n")
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    status = cli.main(["--config", str(config), "--out-dir", str(tmp_path / "out"), "--video"])
    assert status == cli.EXIT_OK
    written = len(read_jsonl(tmp_path / "out" / "1.jsonl"))
    assert 0 < written < 300
    # Finished cleanly: every frame the fleet answered is in the video, the last fragment included.
    assert probe(tmp_path / "out" / "1.mp4")[3] == pytest.approx([k / 10 for k in range(written)])
