"""The live view (``pipeline-track-cameras --view``) in a real browser: two cameras of one config tracked by a
real tritonserver, Debian's Chromium loads the page headless; the screenshot has each track's box colour on
the rectangles the jsonl output gives (scaled as the page shows them), and the page's text names the
cameras with the counts of counts.json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline_client.annotate import id_color
from pipeline_server.server import free_ports
from tests.integration import chromium
from tests.integration.fleet_sources import video_and_frame_dir

FRAMES = 20
FPS = 10.0
DOOR = [[384, 150], [384, 576]]
WINDOW = (1280, 1400)  # two cameras side by side, each scaled to about 0.8 of vtest's 768 x 576
COLOR_TOLERANCE = 70  # per channel: JPEG, then the browser's scaling
EDGE_SAMPLES = 24


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A video of vtest's first ``FRAMES`` frames and a directory of the next ``FRAMES``."""
    return video_and_frame_dir(tmp_path_factory.mktemp("view-sources"), FRAMES)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def locate(screenshot: np.ndarray, frame: np.ndarray) -> tuple[float, int, int]:
    """Where the page shows ``frame``: ``(scale, x, y)`` of the best match over scales 0.4..1."""
    shot = cv2.cvtColor(screenshot, cv2.COLOR_BGR2GRAY)
    best = (-1.0, 1.0, 0, 0)
    for scale in np.linspace(0.4, 1.0, 31):
        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), None, fx=scale, fy=scale)
        if small.shape[0] > shot.shape[0] or small.shape[1] > shot.shape[1]:
            continue
        _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(shot, small, cv2.TM_CCOEFF_NORMED))
        best = max(best, (score, float(scale), x, y))
    assert best[0] > 0.9, best  # the annotated frame is on the page
    return best[1], best[2], best[3]


def edge_hits(image: np.ndarray, box: list[float], color: tuple[int, int, int]) -> float:
    """The share of points along the rectangle ``box`` (screenshot pixels) with ``color`` within 2 px."""
    x1, y1, x2, y2 = box
    t = np.linspace(0.1, 0.9, EDGE_SAMPLES)
    points = [
        *((x1 + (x2 - x1) * u, y1) for u in t),
        *((x1 + (x2 - x1) * u, y2) for u in t),
        *((x1, y1 + (y2 - y1) * u) for u in t),
        *((x2, y1 + (y2 - y1) * u) for u in t),
    ]
    target = np.array(color, np.int32)
    hits = 0
    for x, y in points:
        xi, yi = round(x), round(y)
        patch = image[max(yi - 2, 0) : yi + 3, max(xi - 2, 0) : xi + 3].reshape(-1, 3).astype(np.int32)
        hits += bool(len(patch)) and np.abs(patch - target).max(axis=1).min() <= COLOR_TOLERANCE
    return hits / len(points)


def test_the_live_page_shows_every_camera_with_its_boxes_and_counts(
    triton_server, sources, tmp_path: Path
) -> None:
    reason = chromium.missing()
    if reason:
        pytest.fail(reason)
    video, directory = sources
    lines = [{"name": "door", "points": DOOR}]
    config = {
        "server": triton_server.grpc_url,
        "cameras": [
            {"id": 7, "source": str(video), "lines": lines},
            {"id": "hall-2", "source": str(directory), "fps": FPS, "lines": lines},
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    port = free_ports(1)[0]
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "fleet.log").open("w")
    fleet = subprocess.Popen(
        [sys.executable, "-m", "pipeline_client.fleet.cli", "--config", str(path), "--out-dir", str(out),
         "--view", str(port), "--view-hold", "120"],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        cameras: list[dict] = []
        while time.monotonic() < deadline and fleet.poll() is None:
            try:
                cameras = json.loads(fetch(f"{base}/api/cameras"))
            except OSError:
                cameras = []
            if cameras and all(c["frame"] == FRAMES for c in cameras) and (out / "counts.json").exists():
                break
            time.sleep(0.3)
        assert fleet.poll() is None, (tmp_path / "fleet.log").read_text()
        assert [c["frame"] for c in cameras] == [FRAMES, FRAMES], cameras
        time.sleep(0.5)  # the cameras have ended: counts.json is written at the end of run_fleet
        counts = json.loads((out / "counts.json").read_text())

        dom = chromium.run(f"{base}/?frames=1", "--dump-dom")
        assert "2 cameras" in dom
        for key in ("7", "hall-2"):
            door = counts[key]["door"]
            caption = dom.split(f'id="status-{key}">', 1)[1].split("</figcaption>", 1)[0]
            assert caption.startswith(f"camera {key} | frame {FRAMES} |"), caption
            assert f"door: in {door['in']} out {door['out']}" in caption, (caption, door)
            assert f'src="/camera/{key}/stream.mjpg?frames=1"' in dom

        shot_path = tmp_path / "page.png"
        chromium.run(f"{base}/?frames=1", f"--screenshot={shot_path}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
        shot = cv2.imread(str(shot_path), cv2.IMREAD_COLOR)
        assert shot is not None and shot.shape[:2] == (WINDOW[1], WINDOW[0])
        places = []
        for key in ("7", "hall-2"):
            frame = cv2.imdecode(np.frombuffer(fetch(f"{base}/camera/{key}/frame.jpg"), np.uint8), cv2.IMREAD_COLOR)
            scale, x0, y0 = locate(shot, frame)
            assert 0.6 < scale < 0.95, scale  # the page scaled it: the check below allows for it
            places.append((x0, y0))
            last = json.loads((out / f"{key}.jsonl").read_text().splitlines()[-1])
            assert last["frame"] == FRAMES and len(last["tracks"]) >= 2, last
            for track in last["tracks"]:
                x1, y1, x2, y2 = track["box"]
                box = [x0 + scale * x1, y0 + scale * y1, x0 + scale * x2, y0 + scale * y2]
                color = id_color(track["id"])
                assert edge_hits(shot, box, color) >= 0.7, (key, track, edge_hits(shot, box, color))
                w, h = box[2] - box[0], box[3] - box[1]
                shifted = [box[0] + w / 2, box[1] + h / 2, box[2] + w / 2, box[3] + h / 2]
                assert edge_hits(shot, shifted, color) < 0.3, (key, track)  # the check can fail
        assert places[0] != places[1]  # two cameras, two places on the page

        fleet.send_signal(signal.SIGTERM)  # ends the hold
        assert fleet.wait(timeout=20) == 0, (tmp_path / "fleet.log").read_text()
        with pytest.raises(OSError):
            fetch(f"{base}/")  # the view is gone with the fleet
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
        log.close()
