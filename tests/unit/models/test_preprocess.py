"""Letterbox (YOLOX legacy/modern) and SSD resize."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline_models.preprocess import IMAGENET_MEAN, IMAGENET_STD, image_meta, letterbox, resize_rgb
from tests.unit.sample_data import REPO, read_image, vtest_frame

SIZES = [(640, 640), (800, 1440), (608, 1088), (256, 320)]


def real_images() -> dict[str, np.ndarray]:
    return {
        "vtest.avi#0": vtest_frame(0),
        "messi5.jpg": read_image("messi5.jpg"),
        "fruits.jpg": read_image("fruits.jpg"),
    }


def reference_legacy(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Step by step, float64, as ByteTrack documents its preprocessing."""
    h, w = input_hw
    r = min(h / image.shape[0], w / image.shape[1])
    size = (int(image.shape[1] * r), int(image.shape[0] * r))  # cv2 wants (width, height)
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR).astype(np.float64)
    canvas = np.full((h, w, 3), 114.0)
    canvas[: size[1], : size[0]] = resized
    rgb = canvas[:, :, [2, 1, 0]] / 255.0
    rgb = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return rgb.transpose(2, 0, 1), r


@pytest.mark.parametrize("input_hw", SIZES)
def test_legacy_matches_step_by_step_reference_on_real_images(input_hw):
    for name, image in real_images().items():
        ours, r = letterbox(image, input_hw, legacy=True)
        ref, r_ref = reference_legacy(image, input_hw)
        assert ours.dtype == np.float32 and ours.shape == (3, *input_hw), name
        assert r == r_ref
        assert np.abs(ours - ref).max() <= 1e-5, name


def test_legacy_matches_bytetrack_preproc_summary():
    """Values recorded from ByteTrack's own ``preproc`` (tests/data/bytetrack_preproc_summary.json)."""
    summary = json.loads((REPO / "tests/data/bytetrack_preproc_summary.json").read_text())
    images = real_images()
    assert len(summary["cases"]) == 12
    for case in summary["cases"]:
        ours, r = letterbox(images[case["image"]], tuple(case["input_hw"]), legacy=True)
        assert list(ours.shape) == case["shape"]
        assert r == pytest.approx(case["ratio"], abs=0)
        np.testing.assert_allclose(
            ours.reshape(3, -1).mean(1, dtype=np.float64), case["channel_mean"], atol=1e-5
        )
        np.testing.assert_allclose(
            ours.reshape(3, -1).std(1, dtype=np.float64), case["channel_std"], atol=1e-5
        )
        for c, i, j, value in case["samples"]:
            assert abs(float(ours[c, i, j]) - value) <= 1e-5, (case["image"], case["input_hw"], c, i, j)


def test_modern_keeps_bgr_0_255_and_pads_top_left_with_114():
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0] = 200  # blue channel in BGR
    out, r = letterbox(image, (320, 320), legacy=False)
    assert r == pytest.approx(1.6)
    assert out.shape == (3, 320, 320) and out.dtype == np.float32
    assert np.all(out[0, :160, :] == 200) and np.all(out[1:, :160, :] == 0)  # content top-left, BGR kept
    assert np.all(out[:, 160:, :] == 114)  # padding below


def test_legacy_pad_value_is_normalised_114():
    out, _ = letterbox(np.zeros((10, 40, 3), np.uint8), (64, 64), legacy=True)
    expected = (114 / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out[:, -1, -1], expected, atol=1e-6)


@pytest.mark.parametrize("image_hw", [(576, 768), (1080, 1920), (480, 270), (333, 333)])
@pytest.mark.parametrize("input_hw", [(640, 640), (800, 1440)])
def test_letterbox_round_trip_of_a_planted_box(image_hw, input_hw):
    x1, y1 = image_hw[1] // 4, image_hw[0] // 3
    x2, y2 = x1 + image_hw[1] // 3, y1 + image_hw[0] // 4
    image = np.zeros((*image_hw, 3), np.uint8)
    image[y1:y2, x1:x2] = 255
    out, r = letterbox(image, input_hw, legacy=False)
    ys, xs = np.nonzero(out[0] > 127)  # the white box (padding is 114)
    back = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / r
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=1.0 / r + 1.0)


def test_resize_rgb_for_ssd():
    image = np.zeros((50, 80, 3), np.uint8)
    image[..., 0] = 255  # blue
    out = resize_rgb(image)
    assert out.shape == (300, 300, 3) and out.dtype == np.uint8
    assert np.all(out[..., 2] == 255) and np.all(out[..., :2] == 0)


def test_image_meta():
    np.testing.assert_array_equal(image_meta(np.zeros((5, 7, 3), np.uint8), 0.5), np.float32([5, 7, 0.5]))


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 4, 3), np.uint8)]
)
def test_rejects_non_bgr_images(bad):
    with pytest.raises(ValueError):
        letterbox(bad, (64, 64))
