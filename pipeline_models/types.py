"""Dataclasses shared across module boundaries.

One box format inside: ``xyxy`` float32 in original-frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Detections:
    """Detections of one image as parallel arrays.

    Attributes:
        xyxy: ``(n, 4)`` float32 boxes ``x1, y1, x2, y2`` in original-image pixels.
        scores: ``(n,)`` float32 confidences.
        classes: ``(n,)`` int64 class ids.
    """

    xyxy: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "classes", np.asarray(self.classes, dtype=np.int64).reshape(-1))
        n = len(self.xyxy)
        if len(self.scores) != n or len(self.classes) != n:
            raise ValueError(
                f"Detections arrays disagree: {n} boxes, {len(self.scores)} scores, {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.int64] | slice) -> Detections:
        return Detections(self.xyxy[index], self.scores[index], self.classes[index])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int64))

    @property
    def tlwh(self) -> npt.NDArray[np.float32]:
        """``(n, 4)`` boxes as ``x, y, w, h`` (top-left, width, height)."""
        out = self.xyxy.copy()
        out[:, 2:] -= out[:, :2]
        return out


@dataclass(frozen=True)
class Tracks:
    """Activated tracks output by a tracker for one frame.

    Attributes:
        ids: ``(n,)`` int64 track ids, unique per tracker (camera), starting at 1.
        tlwh: ``(n, 4)`` float64 Kalman boxes ``x, y, w, h`` in original-image pixels.
        scores: ``(n,)`` float32 score of the detection each track was last matched with.
        embeddings: ``(n, D)`` float32 embedding of the detection each track was matched with (NaN rows:
            none), when the tracker was given detection embeddings; None otherwise.
    """

    ids: npt.NDArray[np.int64]
    tlwh: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float32]
    embeddings: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def xyxy(self) -> npt.NDArray[np.float32]:
        """``(n, 4)`` float32 boxes as ``x1, y1, x2, y2``."""
        out = np.asarray(self.tlwh, dtype=np.float64).reshape(-1, 4).copy()
        out[:, 2:] += out[:, :2]
        return out.astype(np.float32)

    @classmethod
    def empty(cls, embedding_dim: int | None = None) -> Tracks:
        """No tracks; with ``embedding_dim``, ``embeddings`` of shape ``(0, embedding_dim)``."""
        embeddings = None if embedding_dim is None else np.empty((0, embedding_dim), np.float32)
        return cls(np.empty(0, np.int64), np.empty((0, 4), np.float64), np.empty(0, np.float32), embeddings)
