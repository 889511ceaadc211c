"""TrackerSessions: one tracker per sequence, start / update / end / sweep."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.tracking.sessions import TrackerSessions, UnknownSequenceError
from pipeline_models.types import Detections, TrackerConfig

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
