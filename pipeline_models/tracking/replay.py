"""Replay a MOT detection file through one tracker and write MOT track rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline_models.mot_io import read_mot_detections, write_track_rows
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.types import TrackerConfig


def replay(det_path: str | Path, out_path: str | Path, config: TrackerConfig) -> int:
    """Track every frame from 1 to the last frame of ``det_path`` (empty frames included).

    Boxes and scores go to the tracker in float64, as read (the reference outputs in ``tests/data``
    were made that way; the official tracker then computes exactly the same numbers).

    Args:
        det_path: MOT detections ``frame,-1,x,y,w,h,score,...``.
        out_path: where to write ``frame,id,x,y,w,h,score,-1,-1,-1`` rows.
        config: tracker parameters.

    Returns:
        The number of frames replayed.

    Raises:
        MotFormatError: malformed detection file.
    """
    per_frame, last_frame = read_mot_detections(det_path)
    tracker = ByteTracker(config)
    empty = (np.empty((0, 4)), np.empty(0))
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as fh:
        for frame in range(1, last_frame + 1):
            xyxy, scores = per_frame.get(frame, empty)
            write_track_rows(fh, frame, tracker.update_arrays(xyxy, scores))
    return last_frame
