"""Tracker speed: our ByteTracker vs cjm-byte-track and (optionally) the official ByteTrack tracker.

Usage: ``python -m bench.tracker [--official PATH_TO_BYTETRACK_CHECKOUT] [--repeat N]``.

For each input (the parity cases and a dense synthetic scene of 100 walking people) every tracker
replays all frames; the best of ``--repeat`` runs gives frames/s. Outputs are compared with ours
frame by frame: ``identical`` means the same ids and bit-identical boxes and scores.

The official tracker is read at run time from the given checkout (never vendored). Its package
``yolox`` imports torch and the removed ``np.float``; only in this process, ``np.float`` is set to
``float`` and, when torch is not installed, an empty ``torch`` module stands in (the tracker uses
torch only for GPU tensors, which we do not pass).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.byte_tracker import ByteTracker

# The checkout's test cases, beside this file: bench is not installed (only `make bench` in a checkout runs
# it), so unlike the packages' paths (``pipeline_config.paths``) these follow the source tree.
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"

# One frame of input: (n, 4) xyxy boxes and (n,) scores, in the dtype every tracker receives.
Frame = tuple[np.ndarray, np.ndarray]
# One frame of output: ids (k,), tlwh (k, 4), scores (k,).
Output = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_case(name: str) -> list[Frame]:
    """Frames 1..last of a parity case, float64 as the reference outputs were made."""
    raw = np.loadtxt(DATA / f"{name}.det.txt", delimiter=",", ndmin=2)
    frames = []
    for f in range(1, int(raw[:, 0].max()) + 1):
        rows = raw[raw[:, 0] == f]
        xyxy = rows[:, 2:6].copy()
        xyxy[:, 2:] += xyxy[:, :2]
        frames.append((xyxy, rows[:, 6].copy()))
    return frames


def dense_scene(people: int = 100, frames: int = 300, seed: int = 0) -> list[Frame]:
    """Synthetic 1920x1080 scene: people walk at constant speed (bouncing off the borders).

    Detections are float32 (as from a detector) with jitter, 8 % misses, random scores (some low)
    and a few false positives per frame.
    """
    rng = np.random.default_rng(seed)
    size = np.array([1920.0, 1080.0])
    h = rng.uniform(60, 200, people)
    w = h * rng.uniform(0.35, 0.5, people)
    pos = rng.uniform([0, 0], size - 200, (people, 2))
    vel = rng.uniform(-4, 4, (people, 2))
    out = []
    for _ in range(frames):
        pos += vel
        bounce = (pos < 0) | (pos + np.stack([w, h], 1) > size)
        vel[bounce] *= -1
        seen = rng.random(people) > 0.08
        jitter = rng.normal(0, 1.5, (people, 4))
        xyxy = np.stack([pos[:, 0], pos[:, 1], pos[:, 0] + w, pos[:, 1] + h], 1) + jitter
        scores = np.clip(rng.normal(0.75, 0.2, people), 0.05, 0.99)
        n_fp = rng.integers(0, 4)
        fp_xy = rng.uniform([0, 0], size - 100, (n_fp, 2))
        fp = np.concatenate([fp_xy, fp_xy + rng.uniform(30, 100, (n_fp, 2))], 1)
        xyxy = np.concatenate([xyxy[seen], fp]).astype(np.float32)
        scores = np.concatenate([scores[seen], rng.uniform(0.1, 0.5, n_fp)]).astype(np.float32)
        out.append((xyxy, scores))
    return out


def run_ours(frames: list[Frame], cfg: TrackerConfig) -> list[Output]:
    tracker = ByteTracker(cfg)
    outs = []
    for xyxy, scores in frames:
        t = tracker.update_arrays(xyxy, scores)
        outs.append((t.ids, t.tlwh, t.scores))
    return outs


def _stracks_output(stracks: list[Any]) -> Output:
    return (
        np.array([t.track_id for t in stracks], dtype=np.int64),
        np.array([t.tlwh for t in stracks], dtype=np.float64).reshape(-1, 4),
        np.array([t.score for t in stracks], dtype=np.float32),
    )


def make_official_runner(path: Path) -> Callable[[list[Frame], TrackerConfig], list[Output]]:
    """Import ``yolox/tracker`` of an official ByteTrack checkout without its package ``__init__``."""
    np.float = float  # type: ignore[attr-defined]  # removed in NumPy 1.24; the official code uses it
    try:
        importlib.import_module("torch")
    except ImportError:
        torch = types.ModuleType("torch")
        torch.nn = types.ModuleType("torch.nn")  # type: ignore[attr-defined]
        torch.nn.functional = types.ModuleType("torch.nn.functional")  # type: ignore[attr-defined]
        sys.modules.update({"torch": torch, "torch.nn": torch.nn, "torch.nn.functional": torch.nn.functional})
    for name, sub in (("yolox", "yolox"), ("yolox.tracker", "yolox/tracker")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path / sub)]  # type: ignore[attr-defined]
        sys.modules[name] = pkg
    bt = importlib.import_module("yolox.tracker.byte_tracker")
    basetrack = importlib.import_module("yolox.tracker.basetrack")

    def run(frames: list[Frame], cfg: TrackerConfig) -> list[Output]:
        basetrack.BaseTrack._count = 0  # its id counter is process-wide
        args = types.SimpleNamespace(
            track_thresh=cfg.track_thresh, track_buffer=cfg.track_buffer,
            match_thresh=cfg.match_thresh, mot20=cfg.mot20,
        )
        tracker = bt.BYTETracker(args, frame_rate=cfg.frame_rate)
        return [_stracks_output(tracker.update(np.column_stack(f), (1, 1), (1, 1))) for f in frames]

    return run


def make_cjm_runner() -> Callable[[list[Frame], TrackerConfig], list[Output]] | None:
    try:
        cjm = importlib.import_module("cjm_byte_track.byte_tracker")
    except ImportError:
        return None

    def run(frames: list[Frame], cfg: TrackerConfig) -> list[Output]:
        tracker = cjm.BYTETracker(
            track_thresh=cfg.track_thresh, track_buffer=cfg.track_buffer,
            match_thresh=cfg.match_thresh, frame_rate=cfg.frame_rate,
        )
        return [_stracks_output(tracker.update(np.column_stack(f), (1, 1), (1, 1))) for f in frames]

    return run


def identical(a: list[Output], b: list[Output]) -> bool:
    """Same ids, bit-identical boxes and scores, every frame."""
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(a, b)
    )


def time_runs(run: Callable[[list[Frame], TrackerConfig], list[Output]], frames: list[Frame],
              cfg: TrackerConfig, repeat: int) -> tuple[float, list[Output]]:
    """Best frames/s over ``repeat`` runs, and the output of the last run."""
    best = float("inf")
    out: list[Output] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run(frames, cfg)
        best = min(best, time.perf_counter() - t0)
    return len(frames) / best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="path to an ifzhang/ByteTrack checkout")
    parser.add_argument("--repeat", type=int, default=10, help="runs per tracker and input (best is kept)")
    args = parser.parse_args(argv)

    peers: dict[str, Callable[[list[Frame], TrackerConfig], list[Output]]] = {}
    if args.official:
        peers["official"] = make_official_runner(args.official.resolve())
    cjm = make_cjm_runner()
    if cjm is not None:
        peers["cjm-byte-track"] = cjm
    else:
        print("cjm-byte-track not installed: `make bench` installs bench/requirements.txt")
    if not args.official:
        print("official tracker not measured: pass --official PATH (an ifzhang/ByteTrack checkout)")

    cases = json.loads((DATA / "cases.json").read_text())
    inputs = [(name, load_case(name), TrackerConfig(**params)) for name, params in cases.items()]
    inputs.append(("dense_100_people", dense_scene(), TrackerConfig()))

    print(f"{'input':<18}{'frames':>7}{'tracker':>16}{'frames/s':>11}{'ours/peer':>11}  identical")
    for name, frames, cfg in inputs:
        ours_fps, ours_out = time_runs(run_ours, frames, cfg, args.repeat)
        print(f"{name:<18}{len(frames):>7}{'ours':>16}{ours_fps:>11.0f}{'':>11}")
        for peer, run in peers.items():
            fps, out = time_runs(run, frames, cfg, args.repeat)
            same = "yes" if identical(ours_out, out) else "NO"
            print(f"{'':<18}{'':>7}{peer:>16}{fps:>11.0f}{ours_fps / fps:>10.2f}x  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
