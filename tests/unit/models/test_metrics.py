"""Bounded camera labels and the failure reasons of the pipeline's own metrics (no Triton)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline_models.metrics import NO_CAMERA, OTHER_CAMERA, REASONS, CameraLabels, failure_reason
from pipeline_models.preprocess import decode_image
from pipeline_models.settings import ImageLimits

LIMIT_BYTES, LIMIT_SIDE = 1_000_000, 64


def test_first_cameras_get_their_own_label_and_later_ones_share_other():
    labels = CameraLabels(max_cameras=2, idle_timeout_s=10.0)
    assert [labels.label(c, 0.0) for c in (5, 9, 7, 5, 9, 7)] == [
        "5",
        "9",
        OTHER_CAMERA,
        "5",
        "9",
        OTHER_CAMERA,
    ]
    assert len(labels) == 2


def test_a_released_slot_goes_to_the_next_new_camera():
    labels = CameraLabels(max_cameras=2, idle_timeout_s=10.0)
    labels.label(1, 0.0), labels.label(2, 0.0)
    assert labels.label(3, 0.0) == OTHER_CAMERA
    assert labels.release(1) == "1"
    assert labels.release(1) is None  # already released
    assert labels.release(3) is None  # never had a label
    assert labels.label(3, 1.0) == "3"  # a camera counted under "other" takes the free slot when next seen
    assert labels.label(1, 1.0) == OTHER_CAMERA  # ... and camera 1 came back too late for it


def test_idle_cameras_are_swept_and_recent_ones_kept():
    labels = CameraLabels(max_cameras=4, idle_timeout_s=5.0)
    labels.label(1, 0.0), labels.label(2, 0.0), labels.label(3, 4.0)
    labels.label(2, 3.0)  # seen again
    assert labels.sweep(5.0) == []  # exactly the timeout is not idle yet
    assert labels.sweep(8.5) == ["1", "2"]
    assert len(labels) == 1 and labels.label(3, 9.0) == "3"


def test_camera_zero_is_none_and_takes_no_slot():
    labels = CameraLabels(max_cameras=1, idle_timeout_s=1.0)
    assert labels.label(0, 0.0) == NO_CAMERA
    assert labels.label(4, 0.0) == "4"


def test_zero_slots_counts_every_camera_as_other():
    labels = CameraLabels(max_cameras=0, idle_timeout_s=1.0)
    assert {labels.label(c, 0.0) for c in range(1, 50)} == {OTHER_CAMERA}


@pytest.mark.parametrize("max_cameras,idle", [(-1, 1.0), (1, 0.0)])
def test_bad_bounds_are_refused(max_cameras, idle):
    with pytest.raises(ValueError):
        CameraLabels(max_cameras, idle)


def _jpeg(side: int) -> bytes:
    return cv2.imencode(".jpg", np.full((side, side, 3), 128, np.uint8))[1].tobytes()


# (id, encoded bytes, reason); each one goes through the real checks and decoder.
FRAMES = [
    ("empty", b"", "empty"),
    ("gif", b"GIF89a not really", "not_image"),
    ("over-side", _jpeg(LIMIT_SIDE + 1), "too_large"),
    ("over-bytes", _jpeg(8)[:-2] + bytes(LIMIT_BYTES) + b"\xff\xd9", "too_large"),
    ("truncated", _jpeg(32)[:200], "corrupt"),
    ("noise-after-header", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "corrupt"),
]


@pytest.mark.parametrize("data,reason", [f[1:] for f in FRAMES], ids=[f[0] for f in FRAMES])
def test_every_refused_frame_gets_its_reason(data: bytes, reason: str):
    with pytest.raises(Exception) as caught:
        decode_image(data, ImageLimits(max_image_bytes=LIMIT_BYTES, max_image_side=LIMIT_SIDE))
    assert failure_reason(caught.value) == reason


def test_other_exceptions_are_internal():
    assert failure_reason(RuntimeError("onnxruntime fell over")) == "internal"
    assert set(REASONS) >= {failure_reason(RuntimeError()), "bad_request"}
