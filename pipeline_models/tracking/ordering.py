"""Frames of a camera in index order: a small reorder buffer in front of its tracker.

A client that keeps several frames of one camera in flight numbers them ``frame_index`` 0, 1, 2, ...
(no gaps). The ensemble may deliver them to the tracker in another order; this buffer releases them in
index order: a frame whose predecessor has not arrived yet is held until it does, or for at most
``wait_s`` (the predecessor may have been refused upstream, e.g. a corrupt image, and will never come);
then the held frames go on without it. A frame that arrives after a later one was released is refused
(reason ``out_of_order``): tracking it then would change tracks already answered.

A client that drops frames on purpose (a live source whose newest frame wins) leaves gaps in the index;
it may say so with each frame's ``previous`` index (the camera's frame it sent before this one): a frame
whose ``previous`` was released goes on at once instead of waiting for frames that were never sent.

Pure bookkeeping, no threads: the caller offers frames, asks for expired ones, and runs what is released.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipeline_models.cameras import out_of_order
from pipeline_models.errors import InvalidInputError, Reason

T = TypeVar("T")

#: Frames of one camera held at once; a frame beyond is refused (a client far ahead of a lost frame).
MAX_HELD = 32


@dataclass
class _Camera(Generic[T]):
    last: int | None = None  # the last released index
    # index -> (frame, when it arrived, the index the client sent before it or None)
    held: dict[int, tuple[T, float, int | None]] = field(default_factory=dict)

    def is_next(self, index: int, previous: int | None) -> bool:
        """Whether frame ``index`` goes on now: nothing released yet, it follows the last released one, or
        the frame sent before it was released (or skipped)."""
        last = self.last
        return last is None or index == last + 1 or (previous is not None and previous <= last)

    def deadline(self, wait_s: float) -> float | None:
        """When the held frames go on without the missing one: the earliest arrival plus the wait."""
        return min(arrived for _, arrived, _ in self.held.values()) + wait_s if self.held else None


class FrameOrder(Generic[T]):
    """Per-camera release of indexed frames in increasing index order.

    Args:
        wait_s: how long a frame may wait for a missing predecessor (> 0).
        max_held: frames of one camera held at once.
    """

    def __init__(self, wait_s: float, max_held: int = MAX_HELD) -> None:
        if wait_s <= 0:
            raise ValueError(f"reorder_wait_s must be positive, got {wait_s}")
        self.wait_s = wait_s
        self.max_held = max_held
        self._cameras: dict[Hashable, _Camera[T]] = {}

    def start(self, camera: Hashable) -> list[T]:
        """A new sequence for ``camera``: its next frame is released whatever its index. Returns the frames
        of the old sequence that were still held (in index order), for the caller to run or refuse."""
        return self.forget(camera)

    def offer(self, camera: Hashable, index: int, item: T, now: float, previous: int | None = None) -> list[T]:
        """Offers ``camera``'s frame ``index``; returns what can run now, in order (``item`` first when it
        is the next one, then held frames it unblocks), or ``[]`` when ``item`` is held. ``previous``: the
        index of the frame the client sent before it, when it says (frames between were never sent).

        Raises:
            InvalidInputError: (out_of_order) ``index`` is not after the last released one, or too many
                frames of the camera are held.
        """
        state = self._cameras.setdefault(camera, _Camera())
        if state.last is None or (index > state.last and state.is_next(index, previous)):
            state.last = index
            return [item, *self._release_next(state)]
        if index <= state.last:
            raise out_of_order(index, state.last)
        if index in state.held:
            raise InvalidInputError(f"frame {index} arrived twice", Reason.OUT_OF_ORDER)
        if len(state.held) >= self.max_held:
            waiting = f"frame {index}: {self.max_held} frames already wait for frame {state.last + 1}"
            raise InvalidInputError(waiting, Reason.OUT_OF_ORDER)
        state.held[index] = (item, now, previous)
        return []

    def expire(self, now: float) -> list[T]:
        """Frames whose wait for a missing predecessor is over, in index order per camera: the missing
        frames are skipped (if one arrives later, it is refused as out of order)."""
        released: list[T] = []
        for state in self._cameras.values():
            while state.held and now >= state.deadline(self.wait_s):
                state.last = min(state.held) - 1
                released.extend(self._release_next(state))
        return released

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`expire` has something to release, None when nothing is held."""
        deadlines = [d for s in self._cameras.values() if (d := s.deadline(self.wait_s)) is not None]
        return min(deadlines, default=None)

    def forget(self, camera: Hashable) -> list[T]:
        """Drops ``camera`` (its sequence ended or was reclaimed); returns its held frames in index order."""
        state = self._cameras.pop(camera, None)
        return [] if state is None else [state.held[i][0] for i in sorted(state.held)]

    def held(self, camera: Hashable) -> int:
        """How many frames of ``camera`` are held."""
        state = self._cameras.get(camera)
        return 0 if state is None else len(state.held)

    def _release_next(self, state: _Camera[T]) -> list[T]:
        released = []
        while state.held:
            index = min(state.held)
            if not state.is_next(index, state.held[index][2]):
                break
            state.last = index
            released.append(state.held.pop(index)[0])
        return released
