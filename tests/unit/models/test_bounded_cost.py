"""Bounded cost per frame: scan and area limits, cut-and-patched JPEGs, EXIF, thin images, detection caps."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.image_checks import check_encoded_image, jpeg_layout
from pipeline_models.letterbox_geometry import letterbox_ratio, letterbox_size
from pipeline_models.postprocess import postprocess_ssd, postprocess_yolox, yolox_grids
from pipeline_models.preprocess import decode_image, letterbox, resize_rgb
from pipeline_models.settings import ImageLimits, from_parameters
from tests.image_samples import cut_and_patched, middle_cut_out, scan_bomb, with_exif_orientation
from tests.unit.sample_data import vtest_frame

THIN = [(1, 1), (1, 8192), (8192, 1), (3, 2000), (2000, 3)]


def jpeg(image: np.ndarray, *params: int) -> bytes:
    return cv2.imencode(".jpg", image, list(params))[1].tobytes()


def textured(height: int, width: int) -> np.ndarray:
    noise = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


PROGRESSIVE = (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
RESTARTS = (cv2.IMWRITE_JPEG_RST_INTERVAL, 4)


# (id, encoded frame, expected reason or None for accepted); every one through check + decode.
def cases() -> list[tuple[str, bytes, Reason | None]]:
    frame = textured(96, 128)
    return [
        ("baseline", jpeg(frame), None),
        ("progressive-10-scans", jpeg(frame, *PROGRESSIVE), None),
        ("grey-progressive-6-scans", jpeg(frame[:, :, 0], *PROGRESSIVE), None),
        ("restart-markers", jpeg(frame, *RESTARTS), None),
        ("progressive-restart-markers", jpeg(frame, *RESTARTS, *PROGRESSIVE), None),
        ("png", cv2.imencode(".png", frame)[1].tobytes(), None),
        ("scan-bomb", scan_bomb(jpeg(frame, *PROGRESSIVE), 200), Reason.TOO_LARGE),
        ("scan-bomb-under-limit", scan_bomb(jpeg(frame, *PROGRESSIVE), 5), Reason.CORRUPT),  # libjpeg warns
        ("cut-baseline", cut_and_patched(jpeg(frame)), Reason.CORRUPT),
        ("cut-progressive", cut_and_patched(jpeg(frame, *PROGRESSIVE)), Reason.CORRUPT),
        ("cut-restart-markers", cut_and_patched(jpeg(frame, *RESTARTS)), Reason.CORRUPT),
        ("middle-cut-out", middle_cut_out(jpeg(frame)), Reason.CORRUPT),
    ]


@pytest.mark.parametrize("data,reason", [c[1:] for c in cases()], ids=[c[0] for c in cases()])
def test_frames_are_accepted_or_refused_with_their_reason(data: bytes, reason: Reason | None):
    if reason is None:
        assert decode_image(data).shape == (96, 128, 3)
        return
    with pytest.raises(InvalidInputError) as caught:
        decode_image(data)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "data",
    [
        cut_and_patched(jpeg(textured(96, 128), *RESTARTS)),
        cut_and_patched(jpeg(textured(96, 128), *RESTARTS, *PROGRESSIVE)),
    ],
    ids=["baseline", "progressive"],
)
def test_cut_jpeg_with_restart_markers_is_refused_from_its_structure_alone(data: bytes):
    """What the gpu path relies on (nvJPEG decodes it without a word): no decoder involved."""
    with pytest.raises(InvalidInputError, match="restart markers of the .* its MCUs need") as caught:
        check_encoded_image(data)
    assert caught.value.reason == Reason.CORRUPT


def test_restart_markers_out_of_order_are_refused():
    data = bytearray(jpeg(textured(96, 128), *RESTARTS))
    first = data.index(b"\xff\xd0")
    data[first + 1] = 0xD3
    with pytest.raises(InvalidInputError, match="restart markers out of their RST0..RST7 cycle"):
        check_encoded_image(bytes(data))


@pytest.mark.parametrize("hw", [(1, 1), (7, 9), (17, 33), (1, 8192), (8192, 1), (3, 2000), (2000, 3)])
@pytest.mark.parametrize(
    "params",
    [
        (),
        PROGRESSIVE,
        RESTARTS,
        (*RESTARTS, *PROGRESSIVE),
        (
            cv2.IMWRITE_JPEG_RST_INTERVAL,
            1,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
        ),
    ],
    ids=["baseline", "progressive", "restarts", "progressive-restarts", "422-restart-every-mcu"],
)
def test_intact_jpegs_of_any_shape_pass_the_structure_check(hw, params):
    """The restart-marker count is exact for intact files (odd sizes, subsampling, progressive)."""
    image = np.full((*hw, 3), 90, np.uint8)
    assert check_encoded_image(jpeg(image, *params))[1:] == hw


def test_scan_count_is_read_and_the_limit_is_exact():
    data = jpeg(textured(64, 64), *PROGRESSIVE)
    assert jpeg_layout(data).scans == 10 and jpeg_layout(data).progressive
    check_encoded_image(data, ImageLimits(max_jpeg_scans=10))
    with pytest.raises(InvalidInputError, match="more than 9 scans") as caught:
        check_encoded_image(data, ImageLimits(max_jpeg_scans=9))
    assert caught.value.reason == Reason.TOO_LARGE


def test_stuffed_bytes_and_fill_bytes_do_not_end_a_scan():
    """0xFF00 stuffing is common in real entropy data; a scan ends only at a real marker."""
    data = jpeg(
        textured(256, 256), cv2.IMWRITE_JPEG_QUALITY, 95
    )  # high quality: plenty of 0xFF00 in the data
    assert data.count(b"\xff\x00") > 10
    assert jpeg_layout(data).scans == 1
    eoi = len(data) - 2
    assert jpeg_layout(data[:eoi] + b"\xff\xff\xff" + data[eoi:]).scans == 1  # fill bytes before EOI


def test_8192_scan_bomb_is_refused_in_milliseconds():
    """The issue's attack: 8192x8192 progressive, a refinement scan repeated hundreds of times (~minute
    of OpenCV decode): refused from the segment walk, by the pixel-area limit and by the scan limit."""
    bomb = scan_bomb(jpeg(np.zeros((8192, 8192, 3), np.uint8), *PROGRESSIVE), 600)
    for limits, match in [
        (ImageLimits(), "more than 32 scans"),
        (ImageLimits(max_jpeg_scans=1000), "pixels, the limit is 33177600 pixels"),
    ]:
        start = time.perf_counter()
        with pytest.raises(InvalidInputError, match=match) as caught:
            decode_image(bomb, limits)
        assert caught.value.reason == Reason.TOO_LARGE
        assert time.perf_counter() - start < 0.5


def test_pixel_area_limit():
    data = jpeg(np.zeros((100, 200, 3), np.uint8))
    check_encoded_image(data, ImageLimits(max_image_pixels=20000))
    with pytest.raises(InvalidInputError, match="200x100 = 20000 pixels, the limit is 19999 pixels"):
        check_encoded_image(data, ImageLimits(max_image_pixels=19999))


@pytest.mark.parametrize("field", ["max_image_bytes", "max_image_side", "max_image_pixels", "max_jpeg_scans"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bad_limits_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ImageLimits(**{field: value})


@pytest.mark.parametrize("key", ["max_image_bytes", "max_image_side", "max_image_pixels", "max_jpeg_scans"])
@pytest.mark.parametrize("value", ["0", "-5", "many", "2.5"])
def test_bad_limit_parameters_name_the_parameter(key, value):
    parameters = {
        "max_image_bytes": "100",
        "max_image_side": "10",
        "max_image_pixels": "100",
        "max_jpeg_scans": "3",
    }
    with pytest.raises(ValueError, match=f"parameter '{key}'"):
        from_parameters(ImageLimits, {**parameters, key: value})


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_ignored(orientation):
    """Boxes are in the stored pixel grid (as nvJPEG on the gpu path); OpenCV's default would rotate."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = 255
    data = with_exif_orientation(jpeg(image), orientation)
    if orientation in (6, 8):
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (40, 20, 3)
    decoded = decode_image(data)
    assert decoded.shape == (20, 40, 3)
    assert decoded[:, :18].min() > 200 and decoded[:, 22:].max() < 50


@pytest.mark.parametrize("hw", THIN)
@pytest.mark.parametrize("input_hw", [(640, 640), (608, 1088), (300, 300)])
def test_letterbox_size_keeps_one_pixel_a_side(hw, input_hw):
    ratio = letterbox_ratio(hw, input_hw)
    new_h, new_w = letterbox_size(hw, ratio)
    assert 1 <= new_h <= input_hw[0] and 1 <= new_w <= input_hw[1]
    assert (new_h, new_w) == (max(int(hw[0] * ratio), 1), max(int(hw[1] * ratio), 1))


@pytest.mark.parametrize("hw", THIN)
@pytest.mark.parametrize("legacy", [True, False])
def test_thin_images_letterbox_and_resize(hw, legacy):
    image = np.full((*hw, 3), 200, np.uint8)
    tensor, ratio = letterbox(image, (640, 640), legacy=legacy)
    assert tensor.shape == (3, 640, 640) and np.isfinite(tensor).all()
    assert ratio == pytest.approx(640 / max(hw))
    assert resize_rgb(image).shape == (300, 300, 3)


def raw_yolox(input_hw=(64, 64), planted=()) -> np.ndarray:
    """A raw head with nothing found, then ``(anchor, row)`` rows planted."""
    raw = np.zeros((len(yolox_grids(input_hw)), 6), np.float32)
    for anchor, row in planted:
        raw[anchor] = row
    return raw


META = np.float32([64, 64, 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("column", [0, 2, 4, 5])
def test_yolox_rows_with_non_finite_values_are_dropped(bad, column):
    good_row = np.float32([0, 0, 0, 0, 0.9, 0.9])
    broken = good_row.copy()
    broken[column] = bad
    raw = raw_yolox(planted=[(10, good_row), (30, broken)])
    dets = postprocess_yolox(raw, META, conf_thresh=0.1, input_hw=(64, 64))
    assert len(dets) == 1 and np.isfinite(dets.xyxy).all() and np.isfinite(dets.scores).all()


def test_yolox_box_whose_exp_overflows_is_dropped():
    raw = raw_yolox(planted=[(10, [0, 0, 0, 0, 0.9, 0.9]), (30, [0, 0, 200.0, 0, 0.9, 0.9])])
    dets = postprocess_yolox(raw, META, conf_thresh=0.1, input_hw=(64, 64))
    assert len(dets) == 1


def test_yolox_detections_are_capped_after_nms_keeping_the_highest():
    grids = yolox_grids((64, 64))
    stride8 = np.flatnonzero(grids[:, 2] == 8)  # 64 disjoint 8x8 cells: NMS keeps them all
    planted = [(a, [0, 0, 0, 0, 0.5 + i / 200, 1.0]) for i, a in enumerate(stride8)]
    raw = raw_yolox(planted=planted)
    every = postprocess_yolox(raw, META, conf_thresh=0.1, input_hw=(64, 64))
    capped = postprocess_yolox(raw, META, conf_thresh=0.1, input_hw=(64, 64), max_detections=5)
    assert len(every) == 64 and len(capped) == 5
    np.testing.assert_array_equal(capped.scores, every.scores[:5])
    assert capped.scores.min() >= np.sort(every.scores)[-5]


def test_ssd_rows_with_non_finite_values_are_dropped_and_detections_capped():
    rows = np.zeros((100, 6), np.float32)
    for i in range(50):
        rows[i] = [i / 100, 0.1, i / 100 + 0.05, 0.2, 0.9 - i / 1000, 1]
    rows[3, 0] = np.nan
    rows[4, 4] = np.inf
    meta = np.float32([100, 100, 1.0])
    every = postprocess_ssd(rows, meta, conf_thresh=0.5)
    assert len(every) == 48 and np.isfinite(every.xyxy).all()
    capped = postprocess_ssd(rows, meta, conf_thresh=0.5, max_detections=7)
    np.testing.assert_array_equal(capped.scores, every.scores[:7])


def test_normal_frame_decodes_as_before():
    """The checks change nothing for a real camera frame (vtest.avi, 768x576)."""
    frame = vtest_frame(0)
    data = jpeg(frame)
    np.testing.assert_array_equal(
        decode_image(data), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    )
