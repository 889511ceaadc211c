"""ReID embedder throughput on this CPU: crops/s at batch 1, 8 and 32, one ONNX Runtime thread and the default.

``python -m bench.reid [--model PATH] [--seconds 2]``: real person crops from vtest.avi frame 200 (the
embedded detector's boxes), preprocessed once by ``crop_batch``; the model is the shared OSNet x0.25 test
fixture unless ``--model`` names another OSNet-style ONNX. Also prints the cost of ``crop_batch`` per crop.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from pipeline_models.reid.crops import crop_batch
from pipeline_models.reid.embedder import Embedder

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "reid" / "osnet_x0_25_msmt17.onnx"
# SSDLite's walkers on vtest.avi frame 200 (as in tests/unit/models/reid/walkers.py).
WALKERS = [[72, 156, 112, 219], [701, 248, 742, 360], [615, 263, 650, 373], [211, 192, 250, 267]]
BATCHES = (1, 8, 32)


def vtest_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(REPO / ".cache" / "data" / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit("vtest.avi missing: run `make data`")
    return frame


def per_call_s(fn: Callable[[], object], seconds: float) -> float:
    """Median seconds per call of ``fn`` over about ``seconds`` of calls (after one warm-up call)."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=FIXTURE, help="OSNet-style ONNX (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="time per measurement (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"ReID model missing: {args.model} (pass --model PATH)", file=sys.stderr)
        return 1
    cv2.setNumThreads(1)
    frame = vtest_frame(200)
    boxes = np.array(WALKERS * 8, np.float32)  # 32 crops
    print(f"{args.model.name}, {os.cpu_count()} CPUs; crops of vtest.avi frame 200")
    for threads, label in ((1, "1 thread"), (0, "default threads")):
        embedder = Embedder(args.model, threads=threads, max_batch=max(BATCHES))
        crops = crop_batch(frame, boxes, embedder.input_hw, bgr=True)
        for batch in BATCHES:
            seconds = per_call_s(lambda e=embedder, c=crops[:batch]: e.embed(c), args.seconds)
            print(
                f"embed {label:16s} batch {batch:3d}: {batch / seconds:7.0f} crops/s  ({seconds * 1e3:6.2f} ms/call)"
            )
    seconds = per_call_s(lambda: crop_batch(frame, boxes, embedder.input_hw, bgr=True), args.seconds)
    print(f"crop_batch (cut, resize, normalise), 32 crops: {seconds / len(boxes) * 1e6:.0f} us/crop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
