"""Frames skipped by the client (a jump in ``frame_index``): the motion model and lost-track ageing count them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.byte_tracker import MAX_PREDICT_STEPS, ByteTracker
from pipeline_models.tracking.sessions import TrackerSessions
from pipeline_models.types import Detections

SPEED = 8.0  # pixels per frame, to the right
WIDTH, HEIGHT = 40.0, 100.0


def walker(index: int) -> Detections:
    """A person at constant velocity, seen at frame ``index``."""
    x = 10.0 + SPEED * index
    return Detections(np.array([[x, 50.0, x + WIDTH, 50.0 + HEIGHT]]), np.array([0.9]), np.array([0]))


def seen_indexes() -> list[int]:
    """30 consecutive frames (the velocity settles), then pairs of frames 5 apart: 3 of 5 frames dropped."""
    return list(range(30)) + [i for first in range(35, 120, 5) for i in (first, first + 1)]


def ids_over(indexes: list[int], config: TrackerConfig | None = None, key: int = 1) -> list[list[int]]:
    sessions = TrackerSessions(config or TrackerConfig(), idle_timeout_s=60)
    sessions.start(key, now=0.0)
    return [sessions.update(key, walker(i), now=0.0, frame_index=i).ids.tolist() for i in indexes]


def test_a_walker_with_dropped_frames_keeps_one_id() -> None:
    ids = ids_over(seen_indexes())
    assert ids == [[1]] * len(ids)


def test_without_indexes_the_same_frames_switch_ids() -> None:
    """The case the frame index fixes: tracked as consecutive frames, after a gap the walker is 32 px
    ahead of a box predicted 8 px ahead, the association fails, and the next frame confirms a new id."""
    sessions = TrackerSessions(TrackerConfig(), idle_timeout_s=60)
    sessions.start(1, now=0.0)
    ids = {i for index in seen_indexes() for i in sessions.update(1, walker(index), now=0.0).ids.tolist()}
    assert len(ids) > 1


def test_consecutive_indexes_change_nothing() -> None:
    indexes = list(range(60))
    sessions = TrackerSessions(TrackerConfig(), idle_timeout_s=60)
    sessions.start(1, now=0.0)
    plain = [sessions.update(1, walker(i), now=0.0) for i in indexes]
    for got, want in zip(ids_over_tracks(indexes), plain):
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.tlwh, want.tlwh)  # bit for bit


def ids_over_tracks(indexes: list[int]):
    sessions = TrackerSessions(TrackerConfig(), idle_timeout_s=60)
    sessions.start(1, now=0.0)
    return [sessions.update(1, walker(i), now=0.0, frame_index=i) for i in indexes]


def test_a_lost_track_ages_by_the_frames_skipped() -> None:
    """Lost at frame 1, seen again at frame 40 with 2 frames between: 39 real frames is past the buffer
    (30 at 30 fps), so the person starts a new track (output from its second frame); at frame 20 they are
    re-found."""
    config = TrackerConfig()
    still = Detections(np.array([[10.0, 50.0, 50.0, 150.0]]), np.array([0.9]), np.array([0]))
    none = Detections(np.empty((0, 4)), np.empty(0), np.empty(0))
    for back, expected in ((20, [[1], [1]]), (40, [[], [2]])):
        sessions = TrackerSessions(config, idle_timeout_s=60)
        sessions.start(1, now=0.0)
        sessions.update(1, still, now=0.0, frame_index=0)
        sessions.update(1, still, now=0.0, frame_index=1)
        sessions.update(1, none, now=0.0, frame_index=5)
        sessions.update(1, none, now=0.0, frame_index=10)
        got = [sessions.update(1, still, now=0.0, frame_index=i).ids.tolist() for i in (back, back + 1)]
        assert got == expected


def test_a_huge_gap_is_quick_and_starts_afresh() -> None:
    sessions = TrackerSessions(TrackerConfig(), idle_timeout_s=60)
    sessions.start(1, now=0.0)
    for i in range(10):
        sessions.update(1, walker(i), now=0.0, frame_index=i)
    began = time.perf_counter()
    tracks = sessions.update(1, walker(10), now=0.0, frame_index=10_009)
    assert time.perf_counter() - began < 0.5
    assert np.isfinite(tracks.tlwh).all()
    assert tracks.ids.tolist() == []  # the old track was gone long ago; a new one starts, unconfirmed
    assert sessions.update(1, walker(11), now=0.0, frame_index=10_010).ids.tolist() == [2]


def test_a_huge_gap_within_a_huge_buffer_predicts_at_most_the_cap() -> None:
    """With the largest buffer a START may set, the track survives a 10 000-frame gap; its prediction
    stops at MAX_PREDICT_STEPS steps, quickly, with finite numbers."""
    tracker = ByteTracker(TrackerConfig(track_buffer=10_000, frame_rate=1000.0))
    for i in range(10):
        tracker.update(walker(i))
    (before,) = [t.mean.copy() for t in tracker.tracked]
    began = time.perf_counter()
    tracks = tracker.update(Detections(np.empty((0, 4)), np.empty(0), np.empty(0)), steps=10_000)
    assert time.perf_counter() - began < 0.5
    (track,) = tracker.lost
    assert np.isfinite(track.mean).all() and np.isfinite(track.covariance).all()
    assert len(tracks) == 0 and tracker.frame_id == 10 + 10_000
    assert track.mean[0] == pytest.approx(before[0] + before[4] * MAX_PREDICT_STEPS, rel=1e-9)


def test_steps_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="steps"):
        ByteTracker().update(walker(0), steps=0)
