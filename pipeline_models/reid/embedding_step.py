"""The reid step of the ensemble, without Triton: one frame's tracks checked and cropped, then the crops of
every frame of a batch embedded in one call, split back per frame.

A box that shows no pixels once clipped to its frame (:func:`pipeline_models.reid.crops.valid_boxes`) gets a
row of NaN: "no embedding", which the identities step treats as a track without appearance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline_models.errors import InvalidInputError
from pipeline_models.reid.crops import crop_batch, valid_boxes
from pipeline_models.reid.embedder import Embedder, rows_per_frame


@dataclass(frozen=True)
class FrameCrops:
    """One frame's crops: ``crops`` ``(k, 3, H, W)`` of the ``valid`` boxes (``(n,)`` bool, k = valid.sum())."""

    crops: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]


def check_frame(frame: npt.NDArray) -> None:
    """Raises InvalidInputError (bad_request) unless ``frame`` is uint8 ``(H, W, 3)`` with H, W >= 1."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise InvalidInputError(f"FRAME must be uint8 (H, W, 3) with H, W >= 1, got {frame.dtype} {frame.shape}")


def check_tracks(
    frame: npt.NDArray, track_ids: npt.NDArray, boxes: npt.NDArray, scores: npt.NDArray
) -> None:
    """Checks one frame's inputs: a uint8 ``(H, W, 3)`` frame and ``n`` ids, boxes ``(n, 4)`` and scores.

    Raises:
        InvalidInputError: (bad_request) naming what is wrong.
    """
    check_frame(frame)
    n = len(track_ids.reshape(-1))
    if boxes.shape != (n, 4) or scores.shape != (n,):
        raise InvalidInputError(
            f"{n} TRACK_IDS need TRACK_BOXES ({n}, 4) and TRACK_SCORES ({n},), got {boxes.shape} and {scores.shape}"
        )


def check_detections(frame: npt.NDArray, boxes: npt.NDArray, scores: npt.NDArray) -> None:
    """Checks one frame's detections (appearance association on): a uint8 ``(H, W, 3)`` frame, boxes
    ``(n, 4)`` and scores ``(n,)``.

    Raises:
        InvalidInputError: (bad_request) naming what is wrong.
    """
    check_frame(frame)
    n = len(scores.reshape(-1))
    if boxes.shape != (n, 4) or scores.shape != (n,):
        raise InvalidInputError(f"{n} DET_SCORES need DET_BOXES ({n}, 4), got {boxes.shape} and scores {scores.shape}")


def crop_tracks(frame: npt.NDArray[np.uint8], boxes: npt.NDArray, input_hw: tuple[int, int]) -> FrameCrops:
    """The crops of one BGR frame's track boxes that show pixels (see the module docstring)."""
    valid = valid_boxes(boxes, frame.shape[:2])
    return FrameCrops(crop_batch(frame, boxes[valid], input_hw, bgr=True), valid)


def no_crops(boxes: npt.NDArray, input_hw: tuple[int, int]) -> FrameCrops:
    """A frame whose boxes are not embedded (``reid_interval``): NaN rows from :func:`embed_frames`."""
    return FrameCrops(np.empty((0, 3, *input_hw), np.float32), np.zeros(len(boxes), bool))


def embed_frames(embedder: Embedder, frames: Sequence[FrameCrops]) -> list[npt.NDArray[np.float32]]:
    """Embeddings of every frame's tracks, all crops in one :meth:`Embedder.embed` call.

    Returns:
        per frame, ``(n, D)`` float32: unit rows, NaN rows where the box showed no pixels.
    """
    if not frames:
        return []
    crops = np.concatenate([f.crops for f in frames]) if any(len(f.crops) for f in frames) else None
    embedded = embedder.embed(crops) if crops is not None else np.empty((0, embedder.dim), np.float32)
    return rows_per_frame(embedded, [f.valid for f in frames], embedder.dim)
