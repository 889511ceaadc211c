"""Client-side cost per frame: JPEG encoding and drawing, at the sample video's size (768x576).

Run: ``python -m bench.client_encode``. Prints milliseconds per frame; no server needed.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from pipeline_client.annotate import draw_tracks, update_trails
from pipeline_client.sources import encode_jpeg

H, W, FRAMES = 576, 768, 200


def _synthetic_frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), np.uint8), (0, 0), 3)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def main() -> None:
    frames = _synthetic_frames(FRAMES)
    boxes = np.array([[100 + 20 * k, 100, 160 + 20 * k, 260] for k in range(10)], np.float32)
    ids = np.arange(1, 11)
    for quality in (75, 90):
        began = time.perf_counter()
        sizes = [len(encode_jpeg(f, quality)) for f in frames]
        ms = (time.perf_counter() - began) / FRAMES * 1000
        print(f"encode_jpeg {W}x{H} q{quality}: {ms:.2f} ms/frame, {np.mean(sizes) / 1024:.0f} KiB")
    trails: dict = {}
    began = time.perf_counter()
    for f in frames:
        trails = update_trails(trails, ids, boxes)
        draw_tracks(f, ids, boxes, trails)
    print(f"draw_tracks 10 tracks: {(time.perf_counter() - began) / FRAMES * 1000:.2f} ms/frame")


if __name__ == "__main__":
    main()
