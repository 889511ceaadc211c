"""``pipeline-track-cameras --video --metrics-port`` against a real tritonserver: per-camera Prometheus metrics
scraped while the fleet runs; an H.264 video per camera with every frame; SIGTERM mid-run (with a webhook
that never answers) still leaves decodable videos and a prompt exit."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import cv2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline_client.sources import iter_capture
from pipeline_server.server import free_ports
from tests.integration.test_fleet import FPS, FRAMES, LINES, ZONE, sources  # noqa: F401 - sources: a fixture
from tests.unit.client.test_fleet_delivery import webhook_server
from tests.unit.sample_data import data_path

LONG_FRAMES = 150


def probe(path: Path) -> tuple[str, str, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return (
            stream.codec_context.name,
            stream.codec_context.pix_fmt,
            sum(1 for _ in container.decode(stream)),
        )


def fleet_command(config: dict, tmp_path: Path, *extra: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(config))
    cli = [sys.executable, "-m", "pipeline_client.fleet.cli", "--config", str(path)]
    return [*cli, "--out-dir", str(tmp_path / "out"), *extra]


def scrape(port: int) -> dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_metrics_scraped_during_a_run_and_a_video_per_camera(triton_server, sources, tmp_path: Path) -> None:  # noqa: F811
    video, directory = sources
    lines = [{"name": name, "points": points} for name, points in LINES.items()]
    config = {
        "server": triton_server.grpc_url,
        "cameras": [
            {"id": 7, "source": str(video), "lines": lines, "zones": [{"name": "left", "polygon": ZONE}]},
            {"id": "hall-2", "source": str(directory), "fps": FPS},
        ],
    }
    (port,) = free_ports(1)
    fleet = subprocess.Popen(
        fleet_command(config, tmp_path, "--video", "--metrics-port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    scrapes: list[dict] = []
    while fleet.poll() is None:
        try:
            scrapes.append(scrape(port))
        except (OSError, http.client.HTTPException, ValueError):  # not up yet, or closing mid-scrape
            pass
        time.sleep(0.05)
    stdout, stderr = fleet.communicate(timeout=120)
    assert fleet.returncode == 0, stdout + stderr

    sent = ("pipeline_fleet_frames_sent_total", (("camera", "7"),))
    during = [s for s in scrapes if 0 < s.get(sent, 0) < FRAMES]
    assert during, f"no scrape caught the run in progress ({len(scrapes)} scrapes)"
    values = [s[sent] for s in scrapes if sent in s]
    assert values == sorted(values)
    counts = json.loads((tmp_path / "out" / "counts.json").read_text())
    last = scrapes[-1]
    for name in LINES:
        for direction in ("in", "out"):
            key = (
                "pipeline_fleet_line_crossings_total",
                (("camera", "7"), ("direction", direction), ("line", name)),
            )
            assert last[key] <= counts["7"][name][direction]  # scraped before the end, never ahead
    assert ("pipeline_fleet_zone_occupancy", (("camera", "7"), ("zone", "left"))) in last
    assert last[("pipeline_fleet_frames_dropped_total", (("camera", "hall-2"),))] == 0

    for camera in ("7", "hall-2"):
        assert probe(tmp_path / "out" / f"{camera}.mp4") == ("h264", "yuv420p", FRAMES)
    first = next(iter(av.open(str(tmp_path / "out" / "7.mp4")).decode(video=0))).to_ndarray(format="bgr24")
    assert first.shape == (576, 768, 3)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest's first ``LONG_FRAMES`` frames: long enough to be stopped mid-run."""
    path = tmp_path_factory.mktemp("long") / "long.avi"
    frames = iter_capture(str(data_path("vtest.avi")))
    writer = None
    for _, image in zip(range(LONG_FRAMES), frames):
        if writer is None:
            size = (image.shape[1], image.shape[0])
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
        writer.write(image)
    writer.release()
    return path


def test_sigterm_mid_run_leaves_decodable_videos(triton_server, long_video: Path, tmp_path: Path) -> None:
    with webhook_server(None) as hook:  # never answers: must not hold up the exit beyond flush_s
        url = f"http://127.0.0.1:{hook.server_address[1]}/"
        config = {
            "server": triton_server.grpc_url,
            "cameras": [{"id": 1, "source": str(long_video)}, {"id": 2, "source": str(long_video)}],
            "events": {"webhook": {"url": url, "timeout_s": 0.5}, "flush_s": 1},
        }
        fleet = subprocess.Popen(
            fleet_command(config, tmp_path, "--video"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        jsonl = tmp_path / "out" / "1.jsonl"
        deadline = time.monotonic() + 60
        while (
            not jsonl.exists() or len(jsonl.read_text().splitlines()) < 15
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        fleet.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        stdout, stderr = fleet.communicate(timeout=60)
        took_s = time.monotonic() - stopped_at
    assert fleet.returncode == 0, stdout + stderr
    assert took_s < 10, took_s
    assert "events webhook http://127.0.0.1" in stdout and "0 delivered" in stdout
    for camera in ("1", "2"):
        written = len((tmp_path / "out" / f"{camera}.jsonl").read_text().splitlines())
        assert 0 < written < LONG_FRAMES
        assert probe(tmp_path / "out" / f"{camera}.mp4") == ("h264", "yuv420p", written)
