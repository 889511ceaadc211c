"""The identities step's own cost on this CPU: ``IdentityService.assign`` per camera frame, no server.

``python -m bench.identities [--cameras 64] [--tracks 10] [--frames 60] [--dim 512] [--repeat 3]``

Each camera shows its own ``--tracks`` people for ``--frames`` frames (unit embeddings with noise, one
sequence per camera, the cameras interleaved frame by frame as a server sees them), twice: a first pass
into an empty gallery, then a second in which every camera restarts (its tracks are new and match the
gallery the first pass left: the case of people re-entering). Prints the best of ``--repeat`` runs, ms a
frame, for each pass. This is the Python a frame costs inside the single identities instance, which every
frame of every camera goes through with ReID on.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pipeline_models.reid.identity_step import IdentityService
from pipeline_models.settings import IdentitySettings, TrackerConfig


def workload(cameras: int, tracks: int, frames: int, dim: int, seed: int = 0) -> list[tuple[int, int, np.ndarray]]:
    """``(camera, frame, embeddings)`` in the order a server gets them."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(cameras * tracks, dim)).astype(np.float32)
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    out = []
    for frame in range(frames):
        for camera in range(cameras):
            seen = people[camera * tracks : (camera + 1) * tracks] + 0.05 * rng.normal(size=(tracks, dim))
            out.append((camera, frame, (seen / np.linalg.norm(seen, axis=1, keepdims=True)).astype(np.float32)))
    return out


def passes_ms(cameras: int, tracks: int, frames: int, dim: int) -> tuple[float, float]:
    """ms a frame of the first pass (empty gallery) and of the second (every camera restarted)."""
    service = IdentityService(IdentitySettings(), TrackerConfig().max_time_lost)
    boxes = np.array([[100.0 * i, 100.0, 100.0 * i + 60, 260.0] for i in range(tracks)], np.float32)
    scores = np.full(tracks, 0.9, np.float32)
    ids = np.arange(1, tracks + 1, dtype=np.int64)
    work = workload(cameras, tracks, frames, dim)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for camera, frame, embeddings in work:
            service.assign(camera, frame / 25, ids, boxes, scores, embeddings, start=frame == 0)
        times.append(1e3 * (time.perf_counter() - start) / len(work))
    return times[0], times[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=64)
    parser.add_argument("--tracks", type=int, default=10, help="people a camera frame")
    parser.add_argument("--frames", type=int, default=60, help="frames a camera, each pass")
    parser.add_argument("--dim", type=int, default=512, help="embedding size D")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.cameras, args.tracks, args.frames, args.dim, args.repeat) < 1:
        parser.error("every count must be at least 1")
    runs = [passes_ms(args.cameras, args.tracks, args.frames, args.dim) for _ in range(args.repeat)]
    first, second = (min(r[k] for r in runs) for k in (0, 1))
    print(f"identities: {args.cameras} cameras x {args.tracks} tracks, D={args.dim}, {args.frames} frames a "
          f"camera, best of {args.repeat}: {first:.3f} ms a frame into an empty gallery, {second:.3f} ms a "
          f"frame re-entering a gallery of {args.cameras * args.tracks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
