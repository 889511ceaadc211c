"""TrackerSessions: one tracker per sequence, start / update / end / sweep."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.sessions import TrackerSessions, UnknownSequenceError
from pipeline_models.types import Detections

ONE = Detections(np.array([[10.0, 10.0, 50.0, 110.0]]), np.array([0.9]), np.array([0]))
TWO = Detections(np.array([[10.0, 10.0, 50.0, 110.0], [300.0, 10.0, 340.0, 110.0]]),
                 np.array([0.9, 0.9]), np.array([0, 0]))


def test_sequences_are_independent_and_restart_resets_ids() -> None:
    s = TrackerSessions(TrackerConfig(), idle_timeout_s=10)
    s.start(7, now=0.0)
    s.start(8, now=0.0)
    np.testing.assert_array_equal(s.update(7, TWO, now=0.1).ids, [1, 2])
    np.testing.assert_array_equal(s.update(8, ONE, now=0.1).ids, [1])
    assert len(s) == 2 and 7 in s and 8 in s and 9 not in s
    s.start(7, now=0.2)  # a new START resets the camera's tracker
    np.testing.assert_array_equal(s.update(7, ONE, now=0.3).ids, [1])


def test_update_of_unknown_sequence_raises() -> None:
    s = TrackerSessions(TrackerConfig(), idle_timeout_s=10)
    with pytest.raises(UnknownSequenceError) as info:
        s.update(3, ONE, now=0.0)
    assert isinstance(info.value, KeyError) and info.value.key == 3
    assert "sequence 3" in str(info.value) and "start" in str(info.value)


def test_end_frees_the_tracker() -> None:
    s = TrackerSessions(TrackerConfig(), idle_timeout_s=10)
    s.start(1, now=0.0)
    assert s.end(1) is True
    assert s.end(1) is False
    assert len(s) == 0
    with pytest.raises(UnknownSequenceError):
        s.update(1, ONE, now=1.0)


def test_sweep_frees_only_idle_trackers() -> None:
    s = TrackerSessions(TrackerConfig(), idle_timeout_s=5)
    s.start(1, now=0.0)
    s.start(2, now=0.0)
    s.update(2, ONE, now=4.0)
    assert s.sweep(now=5.0) == []  # exactly at the timeout is not idle yet
    assert s.sweep(now=5.5) == [1]
    assert 1 not in s and 2 in s
    with pytest.raises(UnknownSequenceError):
        s.update(1, ONE, now=6.0)
    assert s.sweep(now=100.0) == [2] and len(s) == 0


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TrackerSessions(TrackerConfig(), idle_timeout_s=0)


def test_max_cameras_refuses_a_new_camera_and_keeps_nothing_of_it():
    from pipeline_models.errors import InvalidInputError, Reason

    s = TrackerSessions(TrackerConfig(), idle_timeout_s=5, max_cameras=2)
    s.start("a", 0.0)
    s.start(2, 0.0)
    with pytest.raises(InvalidInputError) as info:
        s.start("c", 1.0)
    assert info.value.reason is Reason.CAPACITY and "server full: 2 cameras" in str(info.value)
    assert "c" not in s and len(s) == 2
    s.start("a", 1.0)  # a live camera may start again
    assert s.sweep(5.5) == [2]  # idle past the window: its place frees
    s.start("c", 5.5)
    assert "c" in s


def test_frame_index_must_increase_and_a_refused_frame_changes_nothing():
    from pipeline_models.errors import InvalidInputError, Reason

    s = TrackerSessions(TrackerConfig(), idle_timeout_s=5)
    s.start(1, 0.0)
    s.update(1, ONE, 0.0, frame_index=3)
    for stale in (3, 2):
        with pytest.raises(InvalidInputError) as info:
            s.update(1, TWO, 0.1, frame_index=stale)
        assert info.value.reason is Reason.OUT_OF_ORDER
        assert str(info.value) == f"frame {stale} arrived after frame 3"
    tracks = s.update(1, ONE, 0.2, frame_index=9)
    assert tracks.ids.tolist() == [1]
    s.start(1, 1.0)  # START forgets the last index
    s.update(1, ONE, 1.0, frame_index=0)
