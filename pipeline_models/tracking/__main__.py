"""Command line: ``python -m pipeline_models.tracking replay --det DET.txt --out TRACKS.txt``."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline_models.mot_io import MotFormatError
from pipeline_models.tracking.replay import replay
from pipeline_models.types import TrackerConfig

log = logging.getLogger("pipeline_models.tracking")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_models.tracking", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="track a MOT detection file and write MOT track rows")
    rp.add_argument("--det", required=True, help="MOT detections: frame,-1,x,y,w,h,score,...")
    rp.add_argument("--out", required=True, help="output: frame,id,x,y,w,h,score,-1,-1,-1")
    rp.add_argument("--track-thresh", type=float, default=0.5)
    rp.add_argument("--track-buffer", type=int, default=30)
    rp.add_argument("--match-thresh", type=float, default=0.8)
    rp.add_argument("--frame-rate", type=float, default=30.0)
    rp.add_argument("--mot20", action="store_true", help="no score fusion in the IoU cost")
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
    except MotFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("replayed %d frames of %s into %s", frames, args.det, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
