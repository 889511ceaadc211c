"""ByteTracker behaviour: ids per instance, activation, thresholds, loss and removal, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np

from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.types import Detections


def dets(*boxes_scores: tuple[float, float, float, float, float]) -> Detections:
    arr = np.array(boxes_scores, dtype=np.float64).reshape(-1, 5)
    return Detections(arr[:, :4], arr[:, 4], np.zeros(len(arr), np.int64))


PERSON_A = (100.0, 100.0, 150.0, 220.0)
PERSON_B = (400.0, 120.0, 460.0, 260.0)


def test_first_frame_tracks_are_output_at_once_with_ids_from_one() -> None:
    tracker = ByteTracker(TrackerConfig())
    out = tracker.update(dets((*PERSON_A, 0.9), (*PERSON_B, 0.8)))
    np.testing.assert_array_equal(out.ids, [1, 2])
    np.testing.assert_allclose(out.xyxy, [PERSON_A, PERSON_B], atol=1e-3)
    np.testing.assert_array_equal(out.scores, np.float32([0.9, 0.8]))


def test_later_tracks_are_confirmed_on_their_second_frame() -> None:
    tracker = ByteTracker(TrackerConfig())
    assert len(tracker.update(Detections.empty())) == 0
    assert len(tracker.update(dets((*PERSON_A, 0.9)))) == 0  # unconfirmed
    out = tracker.update(dets((*PERSON_A, 0.7)))
    np.testing.assert_array_equal(out.ids, [1])
    np.testing.assert_array_equal(out.scores, np.float32([0.7]))


def test_unconfirmed_track_without_match_is_removed_and_its_id_not_reused() -> None:
    tracker = ByteTracker(TrackerConfig())
    tracker.update(Detections.empty())
    tracker.update(dets((*PERSON_A, 0.9)))
    tracker.update(Detections.empty())
    assert [t.track_id for t in tracker.removed] == [1] and not tracker.tracked and not tracker.lost
    tracker.update(dets((*PERSON_B, 0.9)))
    np.testing.assert_array_equal(tracker.update(dets((*PERSON_B, 0.9))).ids, [2])


def test_new_track_needs_det_thresh_and_low_scores_are_ignored() -> None:
    tracker = ByteTracker(TrackerConfig(track_thresh=0.5))  # det_thresh 0.6
    assert len(tracker.update(dets((*PERSON_A, 0.55), (*PERSON_B, 0.3)))) == 0
    assert not tracker.tracked


def test_low_score_detection_keeps_a_track_alive() -> None:
    tracker = ByteTracker(TrackerConfig())
    tracker.update(dets((*PERSON_A, 0.9)))
    out = tracker.update(dets((*PERSON_A, 0.3)))  # second association
    np.testing.assert_array_equal(out.ids, [1])
    np.testing.assert_array_equal(out.scores, np.float32([0.3]))
    out = tracker.update(dets((*PERSON_A, 0.1)))  # at or below 0.1: dropped entirely
    assert len(out) == 0 and [t.track_id for t in tracker.lost] == [1]


def test_lost_track_is_refound_then_removed_after_buffer() -> None:
    cfg = TrackerConfig(track_buffer=5)
    tracker = ByteTracker(cfg)
    tracker.update(dets((*PERSON_A, 0.9)))
    for _ in range(3):
        assert len(tracker.update(Detections.empty())) == 0
    np.testing.assert_array_equal(tracker.update(dets((*PERSON_A, 0.9))).ids, [1])  # re-found, same id
    for _ in range(cfg.max_time_lost):
        tracker.update(Detections.empty())
        assert [t.track_id for t in tracker.lost] == [1]
    tracker.update(Detections.empty())
    assert [t.track_id for t in tracker.removed] == [1]
    tracker.update(Detections.empty())
    assert not tracker.lost and not tracker.tracked


def test_interleaved_trackers_have_independent_ids() -> None:
    a, b = ByteTracker(TrackerConfig()), ByteTracker(TrackerConfig())
    for _ in range(3):
        out_a = a.update(dets((*PERSON_A, 0.9), (*PERSON_B, 0.9)))
        out_b = b.update(dets((*PERSON_B, 0.9)))
    np.testing.assert_array_equal(out_a.ids, [1, 2])
    np.testing.assert_array_equal(out_b.ids, [1])
    c = ByteTracker(TrackerConfig())
    np.testing.assert_array_equal(c.update(dets((*PERSON_A, 0.9))).ids, [1])


def _walker_cycle() -> list[Detections]:
    """80 frames of two people at a time, each seen for 40 frames then gone for 40.

    Replayed in a loop, every return is a new person, so tracks are created, lost and removed
    continually.
    """
    cycle = []
    for t0 in range(80):
        boxes = []
        for lane, phase in ((0, 0), (1, 40)):
            t = (t0 + phase) % 80
            if t < 40:
                x, y = 50 + 5 * t, 100 + 300 * lane
                boxes.append((x, y, x + 40, y + 100, 0.9))
        cycle.append(dets(*boxes))
    return cycle


def test_long_run_keeps_lists_and_memory_flat() -> None:
    """100 000 frames: track lists stay small and no memory is retained per frame."""
    tracker = ByteTracker(TrackerConfig())
    cycle = _walker_cycle()
    frames, traced_from, baseline_at = 100_000, 90_000, 91_000
    max_lists = 0
    baseline = growth = 0
    try:
        for frame in range(1, frames + 1):
            tracker.update(cycle[frame % 80])
            max_lists = max(max_lists, len(tracker.tracked) + len(tracker.lost) + len(tracker.removed))
            if frame == traced_from:
                tracemalloc.start()
            elif frame == baseline_at:
                baseline = tracemalloc.get_traced_memory()[0]
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert tracker._last_id > 2000  # people kept coming and going
    assert max_lists <= 6
    assert growth < 16 * 1024, f"memory grew by {growth} bytes over {frames - baseline_at} frames"


def test_boxes_without_area_or_with_nan_are_dropped_and_do_not_poison_tracks():
    tracker = ByteTracker(TrackerConfig())
    good = np.array([[10, 10, 50, 90]], np.float32)
    bad = np.array([[60, 100, 90, 100], [0, 0, np.nan, 5], [5, 5, 3, 9]], np.float32)
    for _ in range(3):
        tracks = tracker.update_arrays(np.vstack([good, bad]), np.array([0.9, 0.95, 0.9, 0.9], np.float32))
    assert tracks.ids.tolist() == [1]
    assert np.isfinite(tracks.tlwh).all()
    np.testing.assert_allclose(tracks.xyxy[0], good[0], atol=1e-3)
