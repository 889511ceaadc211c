"""Detect persons in images: ``python -m pipeline_tools.detect IMAGE... [--model ssdlite|PATH.onnx]
[--family ssd|yolox] [--conf 0.1] --json``.

Prints one JSON object per image and line: ``{"image": path, "detections": [[x1, y1, x2, y2, score], ...]}``
(original pixels, persons only). An unreadable image is reported on stderr, the others are still
processed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import cv2

from pipeline_config import paths
from pipeline_config.cli_help import DefaultsFormatter
from pipeline_models.detectors import load_detector
from pipeline_models.settings import Decode

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.detect",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--model",
        default=paths.EMBEDDED_DETECTOR,
        help=f"'{paths.EMBEDDED_DETECTOR}' (embedded, in ${paths.MODELS_DIR_ENV} or"
        f" ${paths.HOME_ENV}/.cache/models) or a path to an ONNX file",
    )
    parser.add_argument(
        "--family", choices=("ssd", "yolox"), default=None, help="guessed from the model when omitted"
    )
    parser.add_argument(
        "--conf", dest="conf_thresh", type=float, default=Decode.conf_thresh,
        help="score threshold (as served)",
    )
    parser.add_argument(
        "--person-class", type=int, default=None, help="class id of persons (ssd: 1, yolox: 0)"
    )
    parser.add_argument(
        "--modern", action="store_true", help="yolox: current-YOLOX preprocessing, not legacy"
    )
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", action="store_true", help="JSON lines output (the only format)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options: dict[str, object] = {"conf_thresh": args.conf_thresh, "threads": args.threads}
    if args.person_class is not None:
        options["person_class"] = args.person_class
    if args.modern:
        options["legacy"] = False
    try:
        detector = load_detector(paths.detector_model(args.model), args.family, **options)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"error: cannot read image {path!r} (missing or not an image)", file=sys.stderr)
            failed += 1
            continue
        dets = detector.detect([image])[0]
        rows = [
            [round(float(v), 2) for v in box] + [round(float(s), 4)] for box, s in zip(dets.xyxy, dets.scores)
        ]
        print(json.dumps({"image": path, "detections": rows}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
