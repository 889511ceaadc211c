"""A live fleet camera against a real tritonserver (issue 19): the newest frame wins, so frames are
dropped; each sent frame carries its position in the source as ``frame_index`` and, after a gap,
``previous_frame_index``, so the server tracks it at once instead of waiting ``reorder_wait_s`` for the
dropped frames."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from pipeline_client.fleet.config import parse_config
from pipeline_client.fleet.runner import FleetContext, run_fleet
from pipeline_client.sources import iter_capture
from pipeline_models.settings import TrackerServing
from tests.unit.sample_data import data_path

CAMERA = "live-gaps"
FRAMES = 40
# The fake camera delivers its frames in bursts of BURST, the next burst once the server has answered
# another frame: all but the frame the runner takes of each burst are dropped, however fast this machine.
BURST = 3


class TimedClient:
    """A real gRPC client that records each infer's parameters and wall time."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.sent: list[tuple[dict, float]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)

    def infer(self, *args, **kwargs):
        began = time.monotonic()
        try:
            return self.client.infer(*args, **kwargs)
        finally:
            self.sent.append((dict(kwargs.get("parameters") or {}), time.monotonic() - began))


def test_a_live_camera_with_dropped_frames_is_answered_without_the_reorder_wait(
    triton_server, tmp_path: Path
) -> None:
    decoded = [frame for frame, _ in zip(iter_capture(str(data_path("vtest.avi"))), range(FRAMES))]
    opened: list[int] = []

    def open_live(_target: str | int) -> Iterator[np.ndarray]:
        opened.append(1)
        if len(opened) > 1:
            raise OSError("the camera is gone")
        for start in range(0, FRAMES, BURST):
            answered = len(client.sent)
            yield from decoded[start : start + BURST]
            deadline = time.monotonic() + 10
            while len(client.sent) <= answered and time.monotonic() < deadline:
                time.sleep(0.002)

    client = TimedClient(triton_server.grpc_url)
    cameras = [{"id": CAMERA, "source": "rtsp://cam/1"}]
    config = parse_config({"server": triton_server.grpc_url, "cameras": cameras})
    ctx = FleetContext(
        lambda _cid: client,
        tmp_path / "out",
        threading.Event(),
        open_live=open_live,
        live_options={"first_wait_s": 0.05, "max_wait_s": 0.1, "give_up_s": 1.5},
    )
    try:
        (report,) = run_fleet(config, ctx, counts_every_s=1.0)
    finally:
        client.client.close()

    assert report.failed is not None and "no frame for" in report.failed  # the source went away at the end
    assert report.errors == 0 and report.dropped > 0 and report.frames >= 3, report
    indexes = [parameters["frame_index"] for parameters, _ in client.sent]
    gaps = [(a, b) for a, b in itertools.pairwise(indexes) if b > a + 1]
    assert gaps and indexes == sorted(set(indexes)), indexes
    wait_s = TrackerServing().reorder_wait_s
    for (parameters, took), before in zip(client.sent[1:], indexes):
        if parameters["frame_index"] > before + 1:
            assert took < wait_s / 2, (parameters, took)  # answered at once, not after the reorder wait
            assert parameters["previous_frame_index"] == before
    waited = [line for line in triton_server.log_text().splitlines() if "without a frame that never came" in line]
    assert not any(CAMERA in line for line in waited), waited
