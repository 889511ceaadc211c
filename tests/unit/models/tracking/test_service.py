"""TrackingService: answers, ordering, the reorder timer, capacity, END and idle reclaim, without Triton."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.service import Ended, Frame, Tracked, TrackingService
from pipeline_models.types import Detections, Tracks


class Replies:
    """Collects each frame's answer, in the order they come."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Tracks | BaseException]] = []
        self.event = threading.Event()

    def __call__(self, name: str):
        def reply(result: Tracks | BaseException) -> None:
            self.got.append((name, result))
            self.event.set()

        return reply

    def names(self) -> list[str]:
        return [name for name, _ in self.got]

    def reason(self, name: str) -> Reason:
        result = dict(self.got)[name]
        assert isinstance(result, InvalidInputError), result
        return result.reason


def person(x: float) -> Detections:
    return Detections(np.array([[x, 10.0, x + 40.0, 110.0]]), np.array([0.9]), np.zeros(1))


def make_service(reorder_wait_s: float) -> TrackingService:
    timer_events: list = []
    made = TrackingService(
        TrackerConfig(), idle_timeout_s=60.0, max_cameras=2, reorder_wait_s=reorder_wait_s,
        on_timer_events=timer_events.extend,
    )
    made.timer_events = timer_events
    return made


@pytest.fixture
def service():
    """Frames held for a missing one wait 30 s: no test here lasts that long (the timer's clock is real:
    tests that hold frames pass no ``now``)."""
    made = make_service(30.0)
    yield made
    made.close()


@pytest.fixture
def quick_service():
    made = make_service(0.05)
    yield made
    made.close()


def frame(replies: Replies, name: str, camera="cam", index=None, x=100.0, start=False, end=False) -> Frame:
    return Frame(camera, index, person(x), start, end, replies(name))


def test_frames_are_answered_with_one_track_and_counted(service):
    replies = Replies()
    events = service.submit([frame(replies, "a", start=True), frame(replies, "b", x=102.0)], now=0.0)
    assert replies.names() == ["a", "b"]
    tracks = dict(replies.got)["b"]
    assert isinstance(tracks, Tracks) and list(tracks.ids) == [1]
    assert [type(e) for e in events] == [Tracked, Tracked]
    assert service.counts() == (1, 1)


def test_a_frame_ahead_waits_for_its_predecessor(service):
    replies = Replies()
    service.submit([frame(replies, "f0", index=0, start=True)])
    service.submit([frame(replies, "f2", index=2, x=104.0)])
    assert replies.names() == ["f0"]
    service.submit([frame(replies, "f1", index=1, x=102.0)])
    assert replies.names() == ["f0", "f1", "f2"]


def test_the_timer_releases_a_frame_whose_predecessor_never_comes(quick_service):
    service = quick_service
    replies = Replies()
    service.submit([frame(replies, "f0", index=0, start=True)])
    replies.event.clear()
    service.submit([frame(replies, "f2", index=2, x=104.0)])
    assert replies.event.wait(5.0), "the held frame was never released"
    assert replies.names() == ["f0", "f2"] and isinstance(dict(replies.got)["f2"], Tracks)
    assert any(isinstance(e, Tracked) for e in service.timer_events)
    service.submit([frame(replies, "f1", index=1)])  # too late now
    assert replies.reason("f1") is Reason.OUT_OF_ORDER


def test_a_start_beyond_max_cameras_is_refused_and_keeps_nothing(service):
    replies = Replies()
    service.submit([frame(replies, n, camera=n, start=True) for n in ("c1", "c2", "c3")], now=0.0)
    assert replies.reason("c3") is Reason.CAPACITY
    assert service.counts()[0] == 2 and "c3" not in service.sessions


def test_an_indexed_frame_without_a_sequence_is_refused(service):
    replies = Replies()
    service.submit([frame(replies, "x", index=5)], now=0.0)
    assert replies.reason("x") is Reason.NO_SEQUENCE


def test_end_refuses_the_frames_still_held(service):
    replies = Replies()
    service.submit([frame(replies, "f0", index=0, start=True)])
    service.submit([frame(replies, "f3", index=3)])
    events = service.submit([frame(replies, "f1", index=1, end=True)])
    assert isinstance(dict(replies.got)["f1"], Tracks)
    assert replies.reason("f3") is Reason.NO_SEQUENCE
    assert Ended("cam") in events and service.counts() == (0, 0)


def test_an_idle_camera_is_reclaimed_and_its_next_frame_refused(service):
    replies = Replies()
    service.submit([frame(replies, "a", start=True)], now=0.0)
    events = service.submit([frame(replies, "late", camera="other", start=True)], now=61.0)
    assert Ended("cam") in events
    service.submit([frame(replies, "b")], now=61.5)
    assert replies.reason("b") is Reason.NO_SEQUENCE


def test_one_bad_frame_does_not_stop_the_others(service):
    replies = Replies()
    bad = Frame("cam", None, Detections(np.zeros((1, 4)), np.ones(1), np.zeros(1)), True, False, replies("bad"))
    bad.detections = None  # the tracker cannot read it
    service.submit([bad, frame(replies, "good", camera="cam2", start=True)], now=0.0)
    assert replies.names() == ["bad", "good"]
    assert isinstance(dict(replies.got)["bad"], BaseException) and isinstance(dict(replies.got)["good"], Tracks)


def test_a_start_gives_its_camera_its_own_tracker_settings(service):
    replies = Replies()
    starts = [
        Frame("slow", 0, person(100.0), True, False, replies("slow"), {"frame_rate": 5, "track_buffer": 60}),
        Frame("plain", 0, person(100.0), True, False, replies("plain"), {"frame_index": 0, "other": 1}),
    ]
    service.submit(starts, now=0.0)
    assert service.sessions.config_of("slow") == TrackerConfig(frame_rate=5.0, track_buffer=60)
    assert service.sessions.config_of("plain") is service.config
    later = Frame("plain", 1, person(101.0), False, False, replies("later"), {"frame_rate": 5})
    service.submit([later], now=0.0)  # settings on a frame that is not a START are ignored
    assert service.sessions.config_of("plain") is service.config and replies.names()[-1] == "later"


def test_a_start_with_a_bad_setting_is_refused_and_keeps_nothing_of_its_camera(service):
    replies = Replies()
    service.submit([frame(replies, "old", camera="a", start=True), frame(replies, "b", camera="b", start=True)])
    bad = Frame("a", None, person(100.0), True, False, replies("bad"), {"track_buffer": -1})
    events = service.submit([bad, frame(replies, "b2", camera="b", x=101.0)], now=0.0)
    assert replies.reason("bad") is Reason.BAD_REQUEST
    assert "track_buffer" in str(dict(replies.got)["bad"])
    assert "a" not in service.sessions and Ended("a") in events  # the old sequence is over too
    assert isinstance(dict(replies.got)["b2"], Tracks)  # the other camera goes on
    service.submit([frame(replies, "next", camera="a")], now=0.0)
    assert replies.reason("next") is Reason.NO_SEQUENCE
