"""Per-stage detection timings on one core for a 1920x1080 JPEG.

``python -m bench.detection [--repeat 30]``: decode (cv2.imdecode), preprocess (letterbox / resize),
detector (ONNX Runtime, 1 intra-op thread), postprocess (decode + NMS + map back), for the embedded
SSDLite and the YOLOX-tiny ONNX (`make .cache/models/yolox_tiny.onnx`). Prints median and p90 ms.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

import cv2
import numpy as np

from pipeline_config import paths
from pipeline_models.detectors import Detector, load_detector

log = logging.getLogger(__name__)


def make_jpeg() -> bytes:
    """A 1920x1080 JPEG upscaled from a real vtest.avi frame (pedestrians)."""
    cap = cv2.VideoCapture(str(paths.cache_dir() / "data" / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 200)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit("vtest.avi missing: run `make data`")
    big = cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and p90 milliseconds of ``fn`` after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def bench_detector(name: str, det: Detector, jpeg: bytes, repeat: int) -> None:
    buf = np.frombuffer(jpeg, np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    tensor, meta = det.preprocess(image)
    batch = tensor[None]
    raw = det.infer(batch)
    stages = {
        "decode": lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR),
        "preprocess": lambda: det.preprocess(image),
        "detector": lambda: det.infer(batch),
        "postprocess": lambda: det.postprocess(raw[0], meta),
    }
    total = 0.0
    for stage, fn in stages.items():
        med, p90 = timed(fn, repeat)
        total += med
        print(f"{name:12s} {stage:12s} median {med:7.2f} ms   p90 {p90:7.2f} ms")
    n = len(det.postprocess(raw[0], meta))
    rate = 1e3 / total
    print(f"{name:12s} {'total':12s} median {total:7.2f} ms   ({rate:.0f}/s on one core; {n} detections)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    jpeg = make_jpeg()
    print(f"1920x1080 JPEG ({len(jpeg) / 1024:.0f} KiB), one core (cv2 threads 1, ORT intra-op threads 1)")
    ssdlite = load_detector(paths.detector_model(paths.EMBEDDED_DETECTOR), threads=1)
    bench_detector("ssdlite", ssdlite, jpeg, args.repeat)
    yolox = paths.models_dir() / "yolox_tiny.onnx"
    if yolox.is_file():
        det = load_detector(str(yolox), "yolox", threads=1, conf_thresh=0.25, person_class=None)
        bench_detector("yolox_tiny", det, jpeg, args.repeat)
    else:
        print(f"yolox_tiny: {yolox} missing (make .cache/models/yolox_tiny.onnx)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
