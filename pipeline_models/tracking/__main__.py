"""Command line: ``python -m pipeline_models.tracking replay --det DET.txt --out TRACKS.txt``."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline_models.cli_help import DefaultsFormatter
from pipeline_models.mot_io import MotFormatError
from pipeline_models.tracking.replay import replay
from pipeline_models.types import TrackerConfig

log = logging.getLogger("pipeline_models.tracking")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_models.tracking", description=__doc__)
    defaults = TrackerConfig()
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser(
        "replay", help="track a MOT detection file and write MOT track rows", formatter_class=DefaultsFormatter
    )
    rp.add_argument("--det", required=True, help="MOT detections: frame,-1,x,y,w,h,score,...")
    rp.add_argument("--out", required=True, help="output: frame,id,x,y,w,h,score,-1,-1,-1")
    rp.add_argument(
        "--track-thresh", type=float, default=defaults.track_thresh, help="detections above it are high; new tracks start above it + 0.1"
    )
    rp.add_argument(
        "--track-buffer", type=int, default=defaults.track_buffer, help="frames (at 30 fps) a lost track is kept"
    )
    rp.add_argument(
        "--match-thresh", type=float, default=defaults.match_thresh, help="largest IoU distance accepted in the first association"
    )
    rp.add_argument(
        "--frame-rate", type=float, default=defaults.frame_rate, help="the camera's frame rate"
    )
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


def replay_main(argv: list[str] | None = None) -> int:
    """The ``pipeline-replay`` console script: ``main`` with the ``replay`` command implied."""
    return main(["replay", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
