"""Person crops for the ReID model: clipping, degenerate boxes, resize, normalisation, batching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline_models.reid.crops import (
    DEFAULT_INPUT_HW,
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_boxes,
    crop_batch,
    valid_boxes,
)

H, W = 60, 80
NAN = float("nan")


def frame_rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def normalised(rgb: np.ndarray) -> np.ndarray:
    """Reference: ``(N, h, w, 3)`` uint8 RGB -> ``(N, 3, h, w)`` float32, computed in float64."""
    x = (rgb.astype(np.float64) / 255.0 - IMAGENET_MEAN.astype(np.float64)) / IMAGENET_STD.astype(np.float64)
    return x.transpose(0, 3, 1, 2)


@pytest.mark.parametrize(
    "box,window",
    [
        ([10, 5, 30, 45], [10, 5, 30, 45]),  # inside
        ([10.2, 5.7, 29.1, 44.5], [10, 5, 30, 45]),  # fractional: the covering pixels
        ([-15, -3, 20, 70], [0, 0, 20, 60]),  # partly outside: clipped
        ([0, 0, W, H], [0, 0, W, H]),  # the whole frame
        ([200, 100, 300, 200], [W - 1, H - 1, W, H]),  # wholly outside: the nearest pixel
        ([-50, -50, -10, -10], [0, 0, 1, 1]),
        ([20, 20, 20, 20], [20, 20, 21, 21]),  # zero size
        ([30, 40, 10, 20], [30, 40, 31, 41]),  # inverted
        ([NAN, 5, 30, NAN], [0, 5, 30, 6]),  # NaN treated as 0
    ],
)
def test_clip_boxes_gives_a_window_inside_the_frame(box, window):
    got = clip_boxes(np.array([box], np.float32), (H, W))
    assert got.dtype == np.int64 and got.shape == (1, 4)
    assert got[0].tolist() == window


@pytest.mark.parametrize(
    "box,valid",
    [
        ([10, 5, 30, 45], True),
        ([-15, -3, 20, 70], True),
        ([W - 0.5, 10, W + 20, 30], False),  # half a pixel left inside
        ([200, 100, 300, 200], False),
        ([20, 20, 20, 20], False),
        ([30, 40, 10, 20], False),
        ([NAN, 5, 30, 40], False),
        ([0, 0, float("inf"), 10], False),
    ],
)
def test_valid_boxes(box, valid):
    assert valid_boxes(np.array([box]), (H, W)).tolist() == [valid]


def test_each_box_may_have_its_own_frame_size():
    """``(N, 2)`` frame sizes (the GPU crops of many frames at once) give each box its frame's answer."""
    rng = np.random.default_rng(7)
    boxes = np.concatenate([rng.uniform(-50, 700, (40, 2)), rng.uniform(-50, 700, (40, 2))], axis=1)
    boxes[::7] = [np.nan, 1, 2, 3]
    boxes[3::9] = [0, 0, np.inf, np.inf]
    sizes = rng.choice([(H, W), (120, 90), (600, 800), (1, 1)], 40)
    for frame_hw in ((H, W), (1, 1)):
        alone = np.array([valid_boxes(b[None], frame_hw)[0] for b in boxes])
        np.testing.assert_array_equal(valid_boxes(boxes, np.tile(frame_hw, (40, 1))), alone)
    np.testing.assert_array_equal(
        valid_boxes(boxes, sizes), [valid_boxes(b[None], hw)[0] for b, hw in zip(boxes, sizes)]
    )
    np.testing.assert_array_equal(
        clip_boxes(boxes, sizes), np.concatenate([clip_boxes(b[None], hw) for b, hw in zip(boxes, sizes)])
    )


def test_no_boxes_give_a_correctly_shaped_empty_batch():
    for boxes in (np.empty((0, 4), np.float32), [], np.empty(0)):
        out = crop_batch(frame_rgb(), boxes)
        assert out.shape == (0, 3, *DEFAULT_INPUT_HW) and out.dtype == np.float32
    assert crop_batch(frame_rgb(), [], (64, 32)).shape == (0, 3, 64, 32)
    assert clip_boxes([], (H, W)).shape == (0, 4) and valid_boxes([], (H, W)).shape == (0,)


def test_crops_are_resized_scaled_and_normalised():
    frame = frame_rgb()
    boxes = np.array([[10, 5, 30, 45], [0, 0, W, H], [-15, -3, 20, 70]], np.float32)
    out = crop_batch(frame, boxes, (32, 16))
    assert out.shape == (3, 3, 32, 16) and out.dtype == np.float32 and out.flags.c_contiguous
    windows = [frame[5:45, 10:30], frame, frame[0:60, 0:20]]
    expected = normalised(
        np.stack([cv2.resize(w, (16, 32), interpolation=cv2.INTER_LINEAR) for w in windows])
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_a_uniform_colour_gives_the_imagenet_normalised_value_per_channel():
    frame = np.empty((H, W, 3), np.uint8)
    frame[...] = (255, 128, 0)  # RGB
    out = crop_batch(frame, [[0, 0, 40, 50]])
    expected = (np.array([255, 128, 0]) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out[0].reshape(3, -1).mean(axis=1), expected, atol=1e-5)
    np.testing.assert_allclose(out[0].reshape(3, -1).std(axis=1), 0, atol=1e-6)


def test_a_bgr_frame_gives_the_same_batch_as_its_rgb_copy():
    frame = frame_rgb()
    boxes = [[3, 4, 50, 58], [60, 1, 79, 30]]
    np.testing.assert_array_equal(
        crop_batch(frame[..., ::-1].copy(), boxes, bgr=True), crop_batch(frame, boxes)
    )
    assert not np.array_equal(crop_batch(frame[..., ::-1].copy(), boxes), crop_batch(frame, boxes))


def test_degenerate_boxes_still_give_well_formed_crops():
    boxes = [[20, 20, 20, 20], [200, 100, 300, 200], [NAN, NAN, NAN, NAN], [30, 40, 10, 20]]
    out = crop_batch(frame_rgb(), boxes, (16, 8))
    assert out.shape == (4, 3, 16, 8) and np.all(np.isfinite(out))


def test_the_input_frame_is_not_modified():
    frame = frame_rgb()
    before = frame.copy()
    crop_batch(frame, [[0, 0, 40, 40]], bgr=True)
    np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize(
    "frame,boxes,input_hw,message",
    [
        (np.zeros((H, W), np.uint8), [[0, 0, 1, 1]], DEFAULT_INPUT_HW, "frame must be uint8"),
        (np.zeros((H, W, 4), np.uint8), [[0, 0, 1, 1]], DEFAULT_INPUT_HW, "frame must be uint8"),
        (np.zeros((H, W, 3), np.float32), [[0, 0, 1, 1]], DEFAULT_INPUT_HW, "frame must be uint8"),
        (np.zeros((0, W, 3), np.uint8), [[0, 0, 1, 1]], DEFAULT_INPUT_HW, "frame must be uint8"),
        (np.zeros((H, W, 3), np.uint8), [[0, 0, 1]], DEFAULT_INPUT_HW, r"boxes must be \(N, 4\)"),
        (np.zeros((H, W, 3), np.uint8), [0, 0, 1, 1], DEFAULT_INPUT_HW, r"boxes must be \(N, 4\)"),
        (np.zeros((H, W, 3), np.uint8), [[0, 0, 1, 1]], (0, 128), "input_hw must be positive"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(frame, boxes, input_hw, message):
    with pytest.raises(ValueError, match=message):
        crop_batch(frame, boxes, input_hw)
