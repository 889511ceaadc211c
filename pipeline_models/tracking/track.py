"""State of one track."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt


class TrackState(Enum):
    """Life cycle of a track."""

    TRACKED = 1
    LOST = 2
    REMOVED = 3


@dataclass(eq=False, slots=True)
class Track:
    """One tracked object: its Kalman state and bookkeeping.

    Attributes:
        track_id: id unique within its tracker, from 1.
        mean: ``(8,)`` Kalman mean ``x, y, a, h, vx, vy, va, vh``.
        covariance: ``(8, 8)`` Kalman covariance.
        score: score of the detection last matched (float32 value).
        start_frame: frame the track was created.
        frame_id: last frame the track was matched (its end frame while lost).
        state: tracked, lost or removed.
        is_activated: confirmed; only activated tracks are output.
        was_removed: marked removed in an earlier frame (a lost track that was removed is dropped
            when it is lost again; see ``ByteTracker``).
        embedding: ``(D,)`` float32 unit vector, the EMA of its eligible matched detections' embeddings
            (None: no embedding yet, or the tracker gets none).
        observed: ``(D,)`` the embedding of the detection it matched last (NaN: that detection had none).
    """

    track_id: int
    mean: npt.NDArray[np.float64]
    covariance: npt.NDArray[np.float64]
    score: float
    start_frame: int
    frame_id: int
    state: TrackState = TrackState.TRACKED
    is_activated: bool = False
    was_removed: bool = False
    embedding: npt.NDArray[np.float32] | None = None
    observed: npt.NDArray[np.float32] | None = None

    @property
    def age(self) -> int:
        """Frames between creation and the last match."""
        return self.frame_id - self.start_frame
