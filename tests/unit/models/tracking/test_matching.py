"""IoU cost, score fusion and assignment, including empty and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.tracking.matching import fuse_score, iou_distance, linear_assignment


@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 3), (2, 0)])
def test_iou_distance_empty_shapes(n: int, m: int) -> None:
    cost = iou_distance(np.zeros((n, 4)), np.zeros((m, 4)))
    assert cost.shape == (n, m) and cost.dtype == np.float64


def test_iou_distance_values() -> None:
    a = np.array([[0.0, 0.0, 9.0, 9.0]])  # cython_bbox counts pixels inclusively: 10 x 10
    b = np.array([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0], [100.0, 100.0, 110.0, 110.0]])
    np.testing.assert_allclose(iou_distance(a, b), [[0.0, 1 - 50 / 150, 1.0]])


def test_fuse_score() -> None:
    cost = np.array([[0.2, 1.0], [0.5, 0.0]])
    fused = fuse_score(cost, np.array([0.5, 0.9], dtype=np.float32))
    np.testing.assert_allclose(fused, [[1 - 0.8 * 0.5, 1.0], [1 - 0.5 * 0.5, 1 - 0.9]], rtol=1e-6)
    assert fuse_score(np.empty((0, 2)), np.array([0.5, 0.5])).shape == (0, 2)


@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 2), (3, 0)])
def test_assignment_with_nothing_to_match(n: int, m: int) -> None:
    matches, ua, ub = linear_assignment(np.empty((n, m)), thresh=0.8)
    assert matches.shape == (0, 2)
    np.testing.assert_array_equal(ua, np.arange(n))
    np.testing.assert_array_equal(ub, np.arange(m))


@pytest.mark.parametrize(("cost", "matched"), [(0.3, True), (0.8, True), (0.81, False)])
def test_assignment_one_of_each(cost: float, matched: bool) -> None:
    matches, ua, ub = linear_assignment(np.array([[cost]]), thresh=0.8)
    if matched:
        np.testing.assert_array_equal(matches, [[0, 0]])
        assert len(ua) == 0 and len(ub) == 0
    else:
        assert matches.shape == (0, 2)
        np.testing.assert_array_equal(ua, [0])
        np.testing.assert_array_equal(ub, [0])


def test_assignment_all_above_threshold() -> None:
    matches, ua, ub = linear_assignment(np.full((2, 3), 0.95), thresh=0.8)
    assert matches.shape == (0, 2)
    np.testing.assert_array_equal(ua, [0, 1])
    np.testing.assert_array_equal(ub, [0, 1, 2])


def test_assignment_minimises_total_cost_and_does_not_mutate() -> None:
    cost = np.array([[0.1, 0.2, 0.9], [0.15, 0.9, 0.9], [0.9, 0.9, 0.9]])
    before = cost.copy()
    matches, ua, ub = linear_assignment(cost, thresh=0.5)
    np.testing.assert_array_equal(matches, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(ua, [2])
    np.testing.assert_array_equal(ub, [2])
    np.testing.assert_array_equal(cost, before)


def test_numpy_bbox_overlaps_is_bit_identical_to_cython_bbox() -> None:
    cython_bbox = pytest.importorskip("cython_bbox")
    from pipeline_models.tracking.matching import bbox_overlaps_numpy

    rng = np.random.default_rng(7)
    for n, k in [(1, 1), (17, 23), (60, 5)]:
        xy = rng.uniform(0, 300, size=(n + k, 2))
        wh = rng.uniform(-2, 120, size=(n + k, 2))  # some degenerate / inverted boxes too
        boxes = np.concatenate([xy, xy + wh], axis=1)
        boxes[::5] = np.round(boxes[::5])  # integer corners: exact touching edges
        a, b = boxes[:n].copy(), boxes[n:].copy()
        b[0] = a[0]  # one identical pair: IoU exactly 1
        expected = cython_bbox.bbox_overlaps(a, b)
        got = bbox_overlaps_numpy(a, b)
        assert got.dtype == np.float64 and got.shape == (n, k)
        assert np.array_equal(got, expected)
        assert 0 < np.count_nonzero(expected) < n * k or n * k == 1
