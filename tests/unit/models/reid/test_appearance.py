"""Track appearance: which detections update a track, the EMA embedding, and BoT-SORT's IoU + appearance
fusion."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.reid.appearance import (
    TrackAppearance,
    appearance_distance,
    eligible_detections,
    ema_update,
    ema_update_rows,
    fuse_iou_appearance,
    max_overlap,
)
from pipeline_models.reid.unit_vectors import normalise_rows

# With the tracker's +1 pixel convention: BIG covers 10x10 pixels, HALF its top 10x5: IoU exactly 0.5.
BIG, HALF, FAR = [0, 0, 9, 9], [0, 0, 9, 4], [100, 100, 119, 139]


@pytest.mark.parametrize(
    "boxes,scores,min_score,max_iou,eligible",
    [
        (np.empty((0, 4)), np.empty(0), 0.5, 0.5, []),
        ([BIG], [0.9], 0.5, 0.5, [True]),  # one box: no overlap
        ([BIG], [0.5], 0.5, 0.5, [True]),  # score at the threshold
        ([BIG], [0.4999], 0.5, 0.5, [False]),
        ([BIG, HALF], [0.9, 0.9], 0.5, 0.5, [True, True]),  # IoU at the threshold
        ([BIG, HALF], [0.9, 0.9], 0.5, 0.49, [False, False]),
        ([BIG, HALF, FAR], [0.9, 0.9, 0.9], 0.5, 0.3, [False, False, True]),
        (
            [BIG, HALF, FAR],
            [0.9, 0.2, 0.3],
            0.25,
            0.3,
            [False, False, True],
        ),  # a low-score box still overlaps
        ([BIG, FAR], [0.2, 0.9], 0.5, 0.5, [False, True]),
    ],
)
def test_eligible_detections(boxes, scores, min_score, max_iou, eligible):
    got = eligible_detections(np.array(boxes, np.float32), np.array(scores, np.float32), min_score, max_iou)
    assert got.dtype == bool and got.tolist() == eligible


def test_max_overlap_and_bad_lengths():
    np.testing.assert_allclose(max_overlap([BIG, HALF, FAR]), [0.5, 0.5, 0.0])
    assert max_overlap(np.empty((0, 4))).shape == (0,) and max_overlap([BIG]).tolist() == [0.0]
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        eligible_detections([BIG, HALF], [0.9])


@pytest.mark.parametrize(
    "smoothed,new,momentum,expected",
    [
        (None, [3.0, 4.0], 0.9, [0.6, 0.8]),  # a new track starts from its detection
        ([1.0, 0.0], [0.0, 2.0], 0.9, np.array([0.9, 0.1]) / np.hypot(0.9, 0.1)),
        ([1.0, 0.0], [0.0, 1.0], 1.0, [1.0, 0.0]),  # all past
        ([1.0, 0.0], [0.0, 1.0], 0.0, [0.0, 1.0]),  # all new
        ([0.6, 0.8], [0.6, 0.8], 0.5, [0.6, 0.8]),
    ],
)
def test_ema_update(smoothed, new, momentum, expected):
    before = None if smoothed is None else np.array(smoothed, np.float32)
    copy = None if before is None else before.copy()
    out = ema_update(before, np.array(new, np.float32), momentum)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out), 1.0, atol=1e-6)
    if copy is not None:
        np.testing.assert_array_equal(before, copy)


def test_ema_update_rows_is_ema_update_of_each_row():
    rng = np.random.default_rng(3)
    past = normalise_rows(rng.normal(size=(6, 16)))
    past[[1, 4]] = np.nan  # new tracks
    new = rng.normal(size=(6, 16)).astype(np.float32) * 3
    new[5] = 0.0  # a zero embedding stays zero, as ema_update keeps it
    before = past.copy()
    out = ema_update_rows(past, new, 0.8)
    assert out.dtype == np.float32 and out.shape == (6, 16)
    for i in range(6):
        one = ema_update(None if np.isnan(past[i]).all() else past[i], new[i], 0.8)
        np.testing.assert_allclose(out[i], one, atol=1e-6)
    np.testing.assert_array_equal(past, before)  # inputs never modified
    with pytest.raises(ValueError, match="momentum"):
        ema_update_rows(past, new, -0.1)
    with pytest.raises(ValueError, match="differ"):
        ema_update_rows(past[:, :8], new, 0.5)


def test_track_appearance_refuses_one_track_twice_in_an_update():
    with pytest.raises(ValueError, match="unique"):
        TrackAppearance().update([3, 3], [[1, 0], [0, 1]])


def test_ema_update_errors():
    with pytest.raises(ValueError, match="momentum"):
        ema_update(None, [1.0, 0.0], 1.5)
    with pytest.raises(ValueError, match="differs"):
        ema_update(np.ones(3, np.float32), [1.0, 0.0])


NAN2 = [np.nan, np.nan]


@pytest.mark.parametrize(
    "tracks,dets,expected",
    [
        ([[1, 0]], [[2, 0]], [[0.0]]),  # same direction (any norm)
        ([[1, 0]], [[-1, 0]], [[1.0]]),  # opposite
        ([[1, 0]], [[0, 3]], [[0.5]]),  # orthogonal
        ([[1, 0], NAN2], [[1, 0], [0, 0]], [[0.0, 1.0], [1.0, 1.0]]),  # no embedding: no evidence
        (np.empty((0, 2)), [[1, 0], [0, 1]], np.ones((0, 2))),
        ([[1, 0]], np.empty((0, 2)), np.ones((1, 0))),
    ],
)
def test_appearance_distance(tracks, dets, expected):
    got = appearance_distance(np.array(tracks, np.float32), np.array(dets, np.float32))
    assert got.dtype == np.float64 and got.shape == np.shape(expected)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_appearance_distance_errors():
    with pytest.raises(ValueError, match="sizes differ"):
        appearance_distance(np.ones((1, 3)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"must be \(n, D\)"):
        appearance_distance(np.ones(3), np.ones((1, 3)))


@pytest.mark.parametrize(
    "iou,app,expected",
    [
        (0.3, 0.1, 0.1),  # near and alike: appearance wins
        (0.3, 0.25, 0.25),  # appearance at its threshold still counts
        (0.3, 0.2501, 0.3),  # just over: no appearance credit
        (0.5, 0.1, 0.1),  # IoU distance at the proximity threshold still counts
        (0.5001, 0.1, 0.5001),  # too far apart: IoU alone
        (0.9, 0.0, 0.9),
        (0.05, 0.2, 0.05),  # IoU already better
        (1.0, 1.0, 1.0),
    ],
)
def test_fuse_iou_appearance_at_the_thresholds(iou, app, expected):
    got = fuse_iou_appearance(
        np.array([[iou]]), np.array([[app]]), proximity_thresh=0.5, appearance_thresh=0.25
    )
    assert got.shape == (1, 1) and got[0, 0] == pytest.approx(expected)


def test_fuse_iou_appearance_matrix_empty_and_unmodified_inputs():
    iou = np.array([[0.2, 0.9], [0.4, 0.3]])
    app = np.array([[0.1, 0.05], [0.3, 0.2]])
    saved = iou.copy(), app.copy()
    np.testing.assert_allclose(fuse_iou_appearance(iou, app), [[0.1, 0.9], [0.4, 0.2]])
    np.testing.assert_array_equal(iou, saved[0])
    np.testing.assert_array_equal(app, saved[1])
    assert fuse_iou_appearance(np.ones((0, 3)), np.ones((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match="shapes differ"):
        fuse_iou_appearance(np.ones((1, 2)), np.ones((2, 1)))


def test_track_appearance_updates_only_eligible_detections_and_prunes():
    bank = TrackAppearance(momentum=0.5)
    bank.update([1, 2], [[1, 0], [0, 1]], eligible=[True, False])
    assert set(bank.embeddings) == {1}
    bank.update([1, 2], [[0, 1], [0, 1]])
    np.testing.assert_allclose(bank.embeddings[1], np.array([1, 1]) / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(bank.embeddings[2], [0, 1])
    m = bank.matrix([2, 7, 1], dim=2)
    assert m.shape == (3, 2) and np.isnan(m[1]).all()
    np.testing.assert_allclose(
        appearance_distance(m, [[0, 1]])[:, 0], [0.0, 1.0, (1 - np.sqrt(0.5)) / 2], atol=1e-6
    )
    bank.prune([2])
    assert set(bank.embeddings) == {2}
    bank.update([], np.empty((0, 2)))
    with pytest.raises(ValueError, match="eligibility"):
        bank.update([1], [[1, 0]], eligible=[True, True])
