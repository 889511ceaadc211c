"""FrameOrder: frames released in index order, held for a missing one at most wait_s, late ones refused."""

from __future__ import annotations

import pytest

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.tracking.ordering import FrameOrder


def test_in_order_frames_pass_at_once():
    order = FrameOrder(wait_s=1.0)
    assert [order.offer("c", i, i, 0.0) for i in (5, 6, 7)] == [[5], [6], [7]]  # the first index is free
    assert order.next_deadline() is None


def test_an_early_frame_waits_for_its_predecessor_and_both_go_in_order():
    order = FrameOrder(wait_s=1.0)
    order.offer("c", 0, 0, 0.0)
    assert order.offer("c", 2, 2, 0.1) == [] and order.offer("c", 3, 3, 0.2) == []
    assert order.held("c") == 2 and order.next_deadline() == pytest.approx(1.1)
    assert order.offer("c", 1, 1, 0.3) == [1, 2, 3]
    assert order.held("c") == 0 and order.offer("c", 4, 4, 0.4) == [4]


def test_a_missing_frame_is_given_up_after_the_wait_and_refused_if_it_comes_later():
    order = FrameOrder(wait_s=1.0)
    order.offer("c", 0, 0, 0.0)
    order.offer("c", 2, 2, 0.5)
    order.offer("c", 4, 4, 0.9)
    assert order.expire(1.4) == []
    assert order.expire(1.5) == [2]  # frame 1 never came within 1 s of frame 2's arrival
    assert order.expire(1.8) == [] and order.expire(1.9) == [4]  # each gap has its own wait
    with pytest.raises(InvalidInputError) as info:
        order.offer("c", 1, 1, 1.6)
    assert info.value.reason is Reason.OUT_OF_ORDER and str(info.value) == "frame 1 arrived after frame 4"


def test_cameras_are_independent_and_forget_returns_the_held_frames():
    order = FrameOrder(wait_s=1.0)
    order.offer("a", 0, "a0", 0.0)
    order.offer(7, 0, "70", 0.0)
    order.offer("a", 3, "a3", 0.0)
    order.offer("a", 2, "a2", 0.0)
    assert order.offer(7, 1, "71", 0.0) == ["71"]
    assert order.forget("a") == ["a2", "a3"] and order.held("a") == 0
    assert order.offer("a", 9, "a9", 0.0) == ["a9"]  # forgotten: any index starts it again
    assert order.start(7) == [] and order.offer(7, 0, "new", 0.0) == ["new"]


def test_duplicates_and_too_many_held_frames_are_refused():
    order = FrameOrder(wait_s=1.0, max_held=2)
    order.offer("c", 0, 0, 0.0)
    order.offer("c", 2, 2, 0.0)
    for index, says in ((2, "frame 2 arrived twice"), (0, "frame 0 arrived after frame 0")):
        with pytest.raises(InvalidInputError, match=says):
            order.offer("c", index, index, 0.0)
    order.offer("c", 3, 3, 0.0)
    with pytest.raises(InvalidInputError, match="2 frames already wait for frame 1"):
        order.offer("c", 4, 4, 0.0)


def test_wait_must_be_positive():
    with pytest.raises(ValueError, match="reorder_wait_s"):
        FrameOrder(wait_s=0)


def test_a_frame_whose_previous_was_released_goes_on_at_once_across_a_gap():
    """A client that dropped frames 1..4 says frame 5 follows frame 0: no wait for frames never sent."""
    order = FrameOrder(wait_s=1.0)
    order.offer("c", 0, 0, 0.0)
    assert order.offer("c", 5, 5, 0.1, previous=0) == [5]
    assert order.offer("c", 9, 9, 0.2) == []  # without previous a gap still waits
    assert order.offer("c", 12, 12, 0.3, previous=9) == []  # its previous is not released yet: held
    assert order.offer("c", 7, 7, 0.4, previous=5) == [7]  # 9 still waits for 8
    assert order.offer("c", 8, 8, 0.5) == [8, 9, 12]  # 8 releases 9, which releases 12
    assert order.held("c") == 0 and order.next_deadline() is None


def test_a_late_frame_before_a_gap_is_still_held_for():
    """Frames 1 and 3 (previous 1) in flight; 3 arrives first: it waits for 1, which was sent."""
    order = FrameOrder(wait_s=1.0)
    order.offer("c", 0, 0, 0.0)
    assert order.offer("c", 3, 3, 0.1, previous=1) == []
    assert order.offer("c", 1, 1, 0.2) == [1, 3]
