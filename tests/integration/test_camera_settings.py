"""Per-camera tracker settings at START and skipped frames, on the real server (issue 19).

Cameras on one server, each STARTed with its own ``frame_rate``/``track_buffer`` request parameters, see
the same still scene (vtest frame 0, so every track stands still) for 5 frames, then a jump of 16 in
``frame_index`` (15 frames dropped): a camera whose lost-track buffer holds 16 frames keeps its ids; one
whose buffer is shorter, by ``track_buffer`` or by ``frame_rate``, starts new tracks. A gap the client
announces (``previous_frame_index``) is tracked at once; one it does not waits ``reorder_wait_s``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import OUTPUT_NAMES, image_input
from pipeline_models.errors import Reason, reason_of
from tests.unit.sample_data import data_path

SEEN = [0, 1, 2, 3, 4, 20, 21]  # frames 5..19 dropped by the client


@pytest.fixture(scope="module")
def still() -> bytes:
    (frame,) = video_jpegs(data_path("vtest.avi"), 1)
    return frame


def track_ids(client, camera, jpeg: bytes, index: int, parameters: dict | None = None) -> list[int]:
    result = client.infer(
        "pipeline", [image_input(jpeg)], sequence_id=camera, sequence_start=index == 0,
        parameters={"frame_index": index} | (parameters or {}),
        outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUT_NAMES],
    )
    return result.as_numpy("TRACK_IDS").reshape(-1).tolist()


def announced(index: int) -> dict:
    """The gap's first frame says which frame the client sent before it."""
    return {"previous_frame_index": SEEN[SEEN.index(index) - 1]} if index == 20 else {}


def test_cameras_keep_or_drop_tracks_across_a_gap_as_their_start_set(triton_server, client, still):
    settings = {
        "long": {"track_buffer": 60},  # 60 frames at 30 fps: survives the gap
        "short": {"track_buffer": 10},  # 10 frames: lost tracks removed in the gap
        "slow": {"track_buffer": 60, "frame_rate": 5.0},  # 60 * 5 / 30 = 10 frames: removed too
    }
    ids = {camera: [track_ids(client, camera, still, i, settings[camera] if i == 0 else announced(i))
                    for i in SEEN] for camera in settings}
    waited = [line for line in triton_server.log_text().splitlines() if "without a frame that never came" in line]
    assert not any(camera in line for line in waited for camera in settings), waited  # announced: no wait
    for camera, frames in ids.items():
        first = set(frames[4])
        assert len(first) >= 2 and all(set(f) == first for f in frames[:5]), (camera, frames)
    assert set(ids["long"][5]) == set(ids["long"][6]) == set(ids["long"][4])  # the same people, same ids
    for camera in ("short", "slow"):
        old = max(ids[camera][4])
        assert ids[camera][5] == [], camera  # every track was removed: new ones, unconfirmed yet
        assert len(ids[camera][6]) == len(ids[camera][4]) and min(ids[camera][6]) > old, (camera, ids[camera])
    for camera in settings:
        client.infer("pipeline", [image_input(still)], sequence_id=camera, sequence_end=True,
                     parameters={"frame_index": 22})


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"frame_rate": -1.0}, "START parameter frame_rate must be a number in (0, 1000]"),
        ({"track_buffer": 10**9}, "START parameter track_buffer must be an integer in [1, 10000]"),
        ({"mot20": "maybe"}, "START parameter mot20 must be true or false"),
    ],
)
def test_a_bad_setting_refuses_that_start_alone(client, still, parameters, says):
    with pytest.raises(InferenceServerException) as info:
        track_ids(client, "bad-start", still, 0, parameters)
    message = info.value.message()
    assert reason_of(message) is Reason.BAD_REQUEST and says in message, message
    assert track_ids(client, "good-start", still, 0, {"frame_rate": 12.5}) != []  # others are admitted
    with pytest.raises(InferenceServerException) as info:  # nothing was kept of the refused camera
        track_ids(client, "bad-start", still, 1)
    assert reason_of(info.value.message()) is Reason.NO_SEQUENCE, info.value.message()
    np.testing.assert_array_equal(track_ids(client, "good-start", still, 1), track_ids(client, "good-start", still, 2))


def test_an_unannounced_gap_waits_for_the_missing_frame_then_goes_on(client, still):
    track_ids(client, "gap", still, 0)
    began = time.monotonic()
    assert track_ids(client, "gap", still, 5) != []
    assert 0.9 < time.monotonic() - began < 5  # reorder_wait_s: frame 1 might still have been coming
    began = time.monotonic()
    assert track_ids(client, "gap", still, 9, {"previous_frame_index": 5}) != []
    assert time.monotonic() - began < 0.9
