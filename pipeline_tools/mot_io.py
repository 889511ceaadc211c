"""MOTChallenge text files: detections in, tracks out.

Detections: ``frame,id,x,y,w,h,score[,...]`` (``id`` is ``-1``); tracks:
``frame,id,x,y,w,h,score,-1,-1,-1`` with 4-decimal boxes and 5-decimal scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from pipeline_models.types import Tracks


class MotFormatError(ValueError):
    """A malformed line in a MOT file; the message names the file and the line."""

    def __init__(self, path: str | Path, line_no: int, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}")
        self.path = str(path)
        self.line_no = line_no


def integer_field(path: str | Path, line_no: int, text: str, what: str) -> int:
    """A MOT field that must hold an integer (``7`` or ``7.0``), or :class:`MotFormatError` naming it."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise MotFormatError(path, line_no, f"{what} {text!r} is not an integer")
    return int(value)


def parse_line(path: str | Path, line_no: int, line: str) -> tuple[int, list[float]]:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) < 7:
        raise MotFormatError(path, line_no, f"expected at least 7 comma-separated fields, got {len(fields)}")
    frame = integer_field(path, line_no, fields[0], "frame")
    if frame < 1:
        raise MotFormatError(path, line_no, f"frame {frame} is below 1")
    try:
        x, y, w, h, score = (float(v) for v in fields[2:7])
    except ValueError:
        raise MotFormatError(path, line_no, "x, y, w, h and score must be numbers") from None
    if not all(math.isfinite(v) for v in (x, y, w, h, score)):
        raise MotFormatError(path, line_no, "x, y, w, h and score must be finite")
    if w < 0 or h < 0:
        raise MotFormatError(path, line_no, f"negative box size w={w} h={h}")
    return frame, [x, y, x + w, y + h, score]


FrameDetections = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def read_mot_detections(path: str | Path) -> tuple[dict[int, FrameDetections], int]:
    """Read a MOT detection file, keeping full float64 precision.

    Args:
        path: the file; blank lines are skipped.

    Returns:
        Per frame that has detections: ``(n, 4)`` float64 xyxy boxes (``x2 = x + w``) and ``(n,)``
        float64 scores; and the largest frame number (0 if none).

    Raises:
        MotFormatError: on the first malformed line.
        OSError: if the file cannot be read.
    """
    rows: dict[int, list[list[float]]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            frame, values = parse_line(path, line_no, line)
            rows.setdefault(frame, []).append(values)
    per_frame = {}
    for frame, values in rows.items():
        arr = np.array(values, dtype=np.float64)
        per_frame[frame] = (arr[:, :4], arr[:, 4])
    return per_frame, max(rows, default=0)


def format_track_rows(frame: int, tracks: Tracks) -> str:
    """MOT result lines (each ending in a newline) for one frame's tracks."""
    return "".join(
        f"{frame},{tid},{x:.4f},{y:.4f},{w:.4f},{h:.4f},{s:.5f},-1,-1,-1\n"
        for tid, (x, y, w, h), s in zip(tracks.ids.tolist(), tracks.tlwh.tolist(), tracks.scores.tolist())
    )


def write_track_rows(fh: TextIO, frame: int, tracks: Tracks) -> None:
    """Append one frame's tracks to an open MOT result file."""
    fh.write(format_track_rows(frame, tracks))
