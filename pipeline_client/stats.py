"""Latency and run summaries (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraSummary:
    """What one camera sent and got back.

    Attributes:
        camera_id: the sequence (correlation) ID used.
        frames: frames sent (including failed ones).
        errors: frames that failed after the restart rule.
        restarts: times the server asked for a new sequence.
        distinct_ids: distinct track IDs seen.
    """

    camera_id: int | str
    frames: int
    errors: int
    restarts: int
    distinct_ids: int


@dataclass(frozen=True)
class RunSummary:
    """Totals over every camera.

    Attributes:
        frames: frames sent by all cameras.
        wall_s: wall-clock seconds of the run.
        fps: ``frames / wall_s`` (all cameras together).
        p50_ms: median request latency in milliseconds (NaN when nothing was timed).
        p99_ms: 99th-percentile request latency in milliseconds.
        errors: failed frames over all cameras.
        cameras: per-camera summaries.
    """

    frames: int
    wall_s: float
    fps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cameras: tuple[CameraSummary, ...]


def percentiles_ms(latencies_s: Sequence[float], qs: Sequence[float] = (50.0, 99.0)) -> tuple[float, ...]:
    """Percentiles (linear interpolation, as ``numpy.percentile``) of latencies, in milliseconds.

    Args:
        latencies_s: latencies in seconds.
        qs: percentiles in ``[0, 100]``.

    Returns:
        One value per ``q``; all NaN when ``latencies_s`` is empty.
    """
    if len(latencies_s) == 0:
        return tuple(float("nan") for _ in qs)
    values = np.percentile(np.asarray(latencies_s, dtype=np.float64) * 1000.0, list(qs))
    return tuple(float(v) for v in values)


def summarize(latencies_s: Sequence[float], wall_s: float, cameras: Sequence[CameraSummary]) -> RunSummary:
    """Build the run summary from every request's latency and the per-camera counts."""
    frames = sum(c.frames for c in cameras)
    p50, p99 = percentiles_ms(latencies_s)
    fps = frames / wall_s if wall_s > 0 else float("nan")
    return RunSummary(frames, wall_s, fps, p50, p99, sum(c.errors for c in cameras), tuple(cameras))


def format_summary(summary: RunSummary) -> str:
    """Human-readable multi-line summary."""
    lines = [
        (
            f"frames: {summary.frames}  wall: {summary.wall_s:.2f} s  frames/s: {summary.fps:.1f}  "
            f"latency p50: {summary.p50_ms:.1f} ms  p99: {summary.p99_ms:.1f} ms  errors: {summary.errors}"
        )
    ]
    for cam in summary.cameras:
        lines.append(
            f"  camera {cam.camera_id}: frames {cam.frames}  distinct IDs {cam.distinct_ids}  "
            f"errors {cam.errors}  sequence restarts {cam.restarts}"
        )
    return "\n".join(lines)
