"""Live fleet cameras from real processes (issue 19): HTTP MJPEG streams served by ffmpeg, tracked by a real
tritonserver. A camera faster than the server keeps only the newest frame (drops counted); its ffmpeg is
killed with SIGKILL mid-stream and started again, and the fleet reconnects with backoff and tracks on; a
second stream's ffmpeg is killed for good, so that camera is reported failed and the exit status is 1,
while a file camera in the same process reads every frame."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_server.server import free_ports
from tests.integration.ffmpeg_mjpeg import MjpegCamera
from tests.integration.fleet_sources import vtest_frames, write_frame_dir, write_video

FILE_FRAMES = 40
GIVE_UP_S = 6.0  # the camera that never comes back fails this long after its last frame
DOWN_S = 1.2  # the restarted camera is down this long: reconnects after 0.5 s (refused), then 1.0 s more
READRATE = 4.0  # vtest is 10 fps: 40 fps, faster than the cpu profile answers one camera here


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest's first ``FILE_FRAMES`` frames as a 10 fps video (the file camera, and what ffmpeg loops), and
    as JPEGs in ``frames/`` beside it (the frame-directory camera)."""
    root = tmp_path_factory.mktemp("ffmpeg-sources")
    frames = vtest_frames(FILE_FRAMES)
    write_frame_dir(root / "frames", frames)
    return write_video(root / "clip.avi", frames)


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(condition, timeout_s: float, what: str, fleet: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert fleet.poll() is None, f"the fleet exited before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout_s} s:\n{log.read_text()}"
        time.sleep(0.1)


def test_live_mjpeg_cameras_drop_reconnect_and_fail_alone(triton_server, clip: Path, tmp_path: Path) -> None:
    live_port, gone_port = free_ports(2)
    ffmpeg_log = tmp_path / "ffmpeg.log"
    live = MjpegCamera(clip, live_port, READRATE, ffmpeg_log)
    gone = MjpegCamera(clip, gone_port, 1.0, ffmpeg_log)
    config = {
        "server": triton_server.grpc_url,
        "cameras": [
            {"id": "live", "source": live.url, "fps": 10},
            {"id": "gone", "source": gone.url, "fps": 10},
            {"id": "file", "source": str(clip)},
            {"id": "dir", "source": str(clip.parent / "frames"), "fps": 10},
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(config))
    out, log = tmp_path / "out", tmp_path / "fleet.log"
    command = [sys.executable, "-m", "pipeline_client.fleet.cli", "--config", str(path), "--out-dir", str(out),
               "--give-up", str(GIVE_UP_S)]  # fmt: skip
    with live, gone, log.open("w") as log_file:
        fleet = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: len(records(out / "live.jsonl")) >= 15 and len(records(out / "gone.jsonl")) >= 3,
                     90, "frames from both streams", fleet, log)  # fmt: skip
            gone.kill()  # for good
            live.kill()  # mid-stream, then back after DOWN_S
            before = len(records(out / "live.jsonl"))
            time.sleep(DOWN_S)
            live.start()
            wait_for(lambda: len(records(out / "live.jsonl")) >= before + 15, 60, "frames after the restart",
                     fleet, log)  # fmt: skip
            wait_for(lambda: "camera gone failed" in log.read_text(), 30, "the gone camera failing", fleet, log)
            wait_for(lambda: "camera file ended" in log.read_text(), 30, "the file camera's end", fleet, log)
            wait_for(lambda: "camera dir ended" in log.read_text(), 30, "the directory camera's end", fleet, log)
            fleet.send_signal(signal.SIGTERM)  # live cameras run until stopped
            status = fleet.wait(timeout=30)
        finally:
            if fleet.poll() is None:
                fleet.kill()
                fleet.wait()
    text = log.read_text()
    assert status == 1, text  # a camera failed

    # The file and frame-directory cameras: every frame, unaffected by the others.
    for name in ("file", "dir"):
        assert re.search(rf"camera {name}: {FILE_FRAMES} frames, 0 errors, 0 restarts; done", text), text
        assert [r["frame"] for r in records(out / f"{name}.jsonl")] == list(range(1, FILE_FRAMES + 1))

    # The stream that never came back: failed after --give-up, its frames before that kept.
    assert re.search(r"camera gone: \d+ frames, 0 errors, .*FAILED: camera gone: no frame for [\d.]+ s", text)
    assert len(records(out / "gone.jsonl")) >= 3

    # The restarted stream: newest frame wins (drops counted, gaps in the frame numbers), down (the source
    # ended), reconnected with doubling backoff (refused once), tracked again after the gap.
    summary = re.search(r"camera live: (\d+) frames, 0 errors, (\d+) dropped, (\d+) reconnects", text)
    assert summary, text
    frames, dropped, reconnects = (int(g) for g in summary.groups())
    assert dropped > 0 and reconnects >= 2, summary.group(0)
    assert "camera live: the source ended; reconnecting in 0.5 s" in text
    assert re.search(r"camera live: .*; reconnecting in 1\.0 s", text), text
    live_records = records(out / "live.jsonl")
    assert len(live_records) == frames
    numbers = [r["frame"] for r in live_records]
    assert numbers == sorted(set(numbers)) and numbers[-1] - numbers[0] + 1 > len(numbers)  # gaps: drops
    gaps = [(a["ts"], b["ts"]) for a, b in itertools.pairwise(live_records) if b["ts"] - a["ts"] > DOWN_S]
    assert len(gaps) == 1, gaps  # the outage, once
    after = [r for r in live_records if r["ts"] >= gaps[0][1]]
    assert len(after) >= 15 and sum(len(r["tracks"]) for r in after) > len(after)  # people tracked again
