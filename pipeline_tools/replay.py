"""Replay a MOT detection file through one tracker and write MOT track rows.

Command line: ``pipeline-replay --det DET.txt --out TRACKS.txt`` (or ``python -m pipeline_tools.replay``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from pipeline_config.cli_help import DefaultsFormatter
from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_tools.mot_io import MotFormatError, read_mot_detections, write_track_rows

log = logging.getLogger(__name__)


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


def main(argv: list[str] | None = None) -> int:
    """The ``pipeline-replay`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="pipeline-replay", description=__doc__, formatter_class=DefaultsFormatter)
    defaults = TrackerConfig()
    parser.add_argument("--det", required=True, help="MOT detections: frame,-1,x,y,w,h,score,...")
    parser.add_argument("--out", required=True, help="output: frame,id,x,y,w,h,score,-1,-1,-1")
    parser.add_argument(
        "--track-thresh", type=float, default=defaults.track_thresh,
        help="detections above it are high; new tracks start above it + 0.1",
    )
    parser.add_argument(
        "--track-buffer", type=int, default=defaults.track_buffer, help="frames (at 30 fps) a lost track is kept"
    )
    parser.add_argument(
        "--match-thresh", type=float, default=defaults.match_thresh,
        help="largest IoU distance accepted in the first association",
    )
    parser.add_argument("--frame-rate", type=float, default=defaults.frame_rate, help="the camera's frame rate")
    parser.add_argument("--mot20", action="store_true", help="no score fusion in the IoU cost")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = TrackerConfig(
        track_thresh=args.track_thresh,
        track_buffer=args.track_buffer,
        match_thresh=args.match_thresh,
        frame_rate=args.frame_rate,
        mot20=args.mot20,
    )
    try:
        frames = replay(args.det, args.out, config)
    except (MotFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("replayed %d frames of %s into %s", frames, args.det, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
