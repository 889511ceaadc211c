"""YOLOX decode, NMS, SSD unpacking and mapping back to original pixels."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.postprocess import (
    BoxFilters,
    decode_yolox,
    finish_detections,
    nms,
    pack_ssd_outputs,
    postprocess_ssd,
    postprocess_yolox,
    yolox_grids,
)


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def anchor_index(input_hw, stride, gx, gy, strides=(8, 16, 32)):
    index = 0
    for s in strides:
        if s == stride:
            return index + gy * (input_hw[1] // s) + gx
        index += (input_hw[0] // s) * (input_hw[1] // s)
    raise ValueError(stride)


def planted_raw(input_hw, num_classes=1, stride=16, gx=5, gy=3, obj=0.9, cls=None):
    """A raw head with one confident anchor: centre (gx+0.5, gy+0.25)*s, size (4s, 2s)."""
    raw = np.zeros((len(yolox_grids(input_hw)), 5 + num_classes), np.float32)
    i = anchor_index(input_hw, stride, gx, gy)
    raw[i, :4] = [0.5, 0.25, np.log(4.0), np.log(2.0)]
    raw[i, 4] = obj
    raw[i, 5:] = cls if cls is not None else [0.8] * num_classes
    return raw, i


@pytest.mark.parametrize(
    "input_hw,anchors", [((640, 640), 8400), ((800, 1440), 23625), ((416, 416), 3549), ((384, 640), 5040)]
)
def test_grids_count_and_order(input_hw, anchors):
    grids = yolox_grids(input_hw)
    assert grids.shape == (anchors, 3)
    n8 = (input_hw[0] // 8) * (input_hw[1] // 8)
    np.testing.assert_array_equal(grids[0], [0, 0, 8])
    np.testing.assert_array_equal(grids[1], [1, 0, 8])  # row-major: x runs fastest
    np.testing.assert_array_equal(grids[input_hw[1] // 8], [0, 1, 8])
    np.testing.assert_array_equal(grids[n8], [0, 0, 16])
    assert grids[-1, 2] == 32


@pytest.mark.parametrize("input_hw", [(640, 640), (800, 1440), (384, 640)])
@pytest.mark.parametrize("num_classes", [1, 80])
def test_decode_planted_box(input_hw, num_classes):
    raw, i = planted_raw(input_hw, num_classes)
    before = raw.copy()
    out = decode_yolox(raw, input_hw)
    np.testing.assert_array_equal(raw, before)  # input untouched
    np.testing.assert_allclose(out[i, :4], [5.5 * 16, 3.25 * 16, 64, 32], rtol=1e-6)
    np.testing.assert_array_equal(out[i, 4:], raw[i, 4:])
    # Batched input decodes each image the same way.
    batch = decode_yolox(np.stack([raw, raw]), input_hw)
    assert batch.shape == (2, *raw.shape)
    np.testing.assert_allclose(batch[1], out)


def test_decode_rejects_mismatched_anchor_count():
    with pytest.raises(ValueError, match="does not fit"):
        decode_yolox(np.zeros((8400, 6), np.float32), (800, 1440))
    with pytest.raises(ValueError, match="does not fit"):
        postprocess_yolox(np.zeros((23625, 6), np.float32), np.float32([1080, 1920, 0.75]), 0.1)


def test_postprocess_yolox_maps_back_and_filters_persons():
    input_hw = (640, 640)
    raw, _ = planted_raw(input_hw, num_classes=2, cls=[0.9, 0.1])
    other, _ = planted_raw(input_hw, num_classes=2, stride=32, gx=10, gy=10, cls=[0.1, 0.95])
    raw = np.maximum(raw, other)
    meta = np.float32([1080, 1920, 640 / 1920])
    dets = postprocess_yolox(raw, meta, 0.5, 0.7, input_hw)
    assert len(dets) == 1  # the class-1 box is not a person
    r = 640 / 1920
    expected = np.array([88 - 32, 52 - 16, 88 + 32, 52 + 16]) / r
    np.testing.assert_allclose(dets.xyxy[0], expected, rtol=1e-5)
    assert dets.scores[0] == pytest.approx(0.9 * 0.9)
    assert dets.classes[0] == 0
    both = postprocess_yolox(raw, meta, 0.5, input_hw=input_hw, keep_classes=None)
    assert sorted(both.classes.tolist()) == [0, 1]
    assert both.scores[0] >= both.scores[1]


def test_postprocess_yolox_clips_to_image():
    input_hw = (640, 640)
    raw, _ = planted_raw(input_hw, stride=32, gx=0, gy=0)  # box centred at (16, 8), 128x64: sticks out
    dets = postprocess_yolox(raw, np.float32([640, 640, 1.0]), 0.5, input_hw=input_hw)
    assert dets.xyxy[0, 0] == 0 and dets.xyxy[0, 1] == 0


def test_postprocess_yolox_empty_output():
    raw = np.zeros((8400, 6), np.float32)
    dets = postprocess_yolox(raw, np.float32([480, 640, 1.0]), conf_thresh=0.1)
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4) and dets.scores.dtype == np.float32


def test_nms_order_and_suppression():
    boxes = np.float32([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]])
    scores = np.float32([0.6, 0.9, 0.7, 0.8])
    keep = nms(boxes, scores, 0.5)
    # IoU(1, 0) = 0.68, IoU(1, 3) = 0.61, IoU(3, 0) = 0.90; box 2 is far away.
    assert keep.tolist() == [1, 2]  # box 1 (0.9) suppresses boxes 3 and 0
    assert nms(boxes, scores, 0.7).tolist() == [1, 3, 2]  # box 3 survives box 1; box 0 falls to box 3


def test_nms_ties_keep_input_order():
    boxes = np.float32([[100, 100, 110, 110], [0, 0, 10, 10], [0, 0, 10, 10], [200, 0, 210, 10]])
    scores = np.float32([0.5, 0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3]


def test_nms_per_class_and_agnostic():
    boxes = np.float32([[0, 0, 10, 10], [0, 0, 10, 10]])
    scores = np.float32([0.9, 0.8])
    assert nms(boxes, scores, 0.5, classes=np.int64([0, 1])).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert nms(np.empty((0, 4), np.float32), np.empty(0, np.float32), 0.5).shape == (0,)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """Textbook greedy NMS (independent reference)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in order:
        ok = True
        for j in keep:
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = iw * ih
            if inter / (area[i] + area[j] - inter) > thresh:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_greedy_reference(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (60, 2))
    wh = rng.uniform(10, 80, (60, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0.1, 1.0, 60).astype(np.float32)
    assert nms(boxes, scores, 0.45).tolist() == greedy_nms(boxes.astype(np.float64), scores, 0.45)


def test_demo_filters_off_by_default_and_on_when_asked():
    boxes = np.float32([[0, 0, 100, 50], [0, 0, 2, 3], [0, 0, 20, 50]])  # wide, tiny, person-like
    scores, classes = np.float32([0.9, 0.8, 0.7]), np.int64([0, 0, 0])
    assert len(finish_detections(boxes, scores, classes, (100, 100))) == 3
    kept = finish_detections(
        boxes, scores, classes, (100, 100), BoxFilters(max_aspect_ratio=1.6, min_area=10)
    )
    np.testing.assert_array_equal(kept.xyxy, boxes[2:])


def test_pack_ssd_outputs_zeroes_rows_past_num_detections():
    boxes = np.random.default_rng(0).uniform(0, 1, (2, 100, 4)).astype(np.float32)
    scores = np.full((2, 100), 0.9, np.float32)
    classes = np.ones((2, 100), np.float32)
    packed = pack_ssd_outputs(np.float32([3, 0]), boxes, scores, classes)
    assert packed.shape == (2, 100, 6) and packed.dtype == np.float32
    np.testing.assert_array_equal(packed[0, :3, 4], 0.9)
    assert np.all(packed[0, 3:, 4] == 0) and np.all(packed[1, :, 4] == 0)
    np.testing.assert_array_equal(packed[..., :4], boxes)


def test_postprocess_ssd_maps_normalised_boxes_and_keeps_persons():
    raw = np.zeros((100, 6), np.float32)
    raw[0] = [0.1, 0.2, 0.5, 0.4, 0.6, 1]  # person
    raw[1] = [0.0, 0.0, 0.2, 0.2, 0.95, 3]  # car
    raw[2] = [0.5, 0.5, 1.0, 1.0, 0.9, 1]  # person, higher score
    raw[3] = [0.5, 0.5, 1.0, 1.0, 0.4, 1]  # below threshold
    dets = postprocess_ssd(raw, np.float32([480, 640, 1.0]), conf_thresh=0.5, person_class=1)
    np.testing.assert_allclose(dets.xyxy, [[320, 240, 640, 480], [128, 48, 256, 240]], rtol=1e-6)
    np.testing.assert_allclose(dets.scores, [0.9, 0.6])
    assert dets.classes.tolist() == [1, 1]
    assert len(postprocess_ssd(np.zeros((100, 6), np.float32), np.float32([480, 640, 1]), 0.5)) == 0
