"""Issue 18's acceptance scene: two cameras with overlapping views of one scene (the left and the right 60%
of each vtest.avi frame), streamed at once through ``pipeline``. Ground truth: the ReID-off tracks of the
full frame are the person identities (``overlapping_views`` cuts them into each view)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import tritonclient.grpc as grpcclient

from pipeline_client.triton_client import image_input
from pipeline_tools.cross_camera import (
    CrossCameraResult,
    TrackBox,
    cross_camera_consistency,
    overlapping_views,
)
from pipeline_tools.local_pipeline import LocalPipeline

FRAMES = 150  # frames per camera (vtest.avi, 768x576)
VIEW = 0.6
OUTPUTS = ("TRACK_IDS", "BOXES", "SCORES", "GLOBAL_IDS", "NAMES")
Frame = dict[str, np.ndarray]


def infer(client, camera, jpeg: bytes, start=False, end=False) -> Frame:
    """One frame through ``pipeline``: every output without its batch dim."""
    result = client.infer(
        "pipeline", [image_input(jpeg)], outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS],
        sequence_id=camera, sequence_start=start, sequence_end=end,
    )  # fmt: skip
    return {name: result.as_numpy(name)[0] for name in OUTPUTS}


def stream(url: str, camera, jpegs: list[bytes]) -> list[Frame]:
    with grpcclient.InferenceServerClient(url) as client:
        return [infer(client, camera, j, i == 0, i == len(jpegs) - 1) for i, j in enumerate(jpegs)]


def crop_jpeg(data: bytes, x0: int, x1: int) -> bytes:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    ok, encoded = cv2.imencode(".jpg", image[:, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def camera_tracks(frames: list[Frame]) -> dict[int, list[TrackBox]]:
    return {
        i + 1: [TrackBox(int(t), tuple(map(float, b)), int(g))
                for t, b, g in zip(f["TRACK_IDS"], f["BOXES"], f["GLOBAL_IDS"], strict=True)]
        for i, f in enumerate(frames)
    }  # fmt: skip


def two_view_figure(url: str, full_frames: list[bytes]) -> tuple[CrossCameraResult, dict[int, list[Frame]]]:
    """Streams the two views (cameras 21 and 22) at once; the cross-camera figure and each camera's frames."""
    width = cv2.imdecode(np.frombuffer(full_frames[0], np.uint8), cv2.IMREAD_COLOR).shape[1]
    local = LocalPipeline.from_profile("cpu")
    truth = {}
    for i, data in enumerate(full_frames):
        tracks = local.track(9, data, start=i == 0)
        truth[i + 1] = {int(t): tuple(map(float, b)) for t, b in zip(tracks.ids, tracks.xyxy, strict=True)}
    truth_a, truth_b = overlapping_views(truth, width, VIEW)
    cut = round((1 - VIEW) * width)
    views = {
        21: [crop_jpeg(d, 0, round(VIEW * width)) for d in full_frames],
        22: [crop_jpeg(d, cut, width) for d in full_frames],
    }
    results: dict[int, list[Frame]] = {}
    threads = [
        threading.Thread(target=lambda c=c: results.__setitem__(c, stream(url, c, views[c]))) for c in views
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figure = cross_camera_consistency(truth_a, camera_tracks(results[21]), truth_b, camera_tracks(results[22]))
    return figure, results
