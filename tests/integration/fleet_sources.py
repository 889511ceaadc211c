"""Camera sources for the fleet tests, cut from vtest.avi: a video file (MJPG) and a frame directory."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline_client.sources import iter_capture
from tests.unit.sample_data import data_path

FPS = 10.0  # vtest's own rate


def vtest_frames(count: int) -> list[np.ndarray]:
    """vtest.avi's first ``count`` frames."""
    return [image for _, image in zip(range(count), iter_capture(str(data_path("vtest.avi"))))]


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    """``frames`` as an MJPG video at ``fps``."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for image in frames:
        writer.write(image)
    writer.release()
    return path


def write_frame_dir(directory: Path, frames: list[np.ndarray]) -> Path:
    """``frames`` as ``0000.jpg``, ``0001.jpg``, ... in ``directory`` (created)."""
    directory.mkdir()
    for k, image in enumerate(frames):
        cv2.imwrite(str(directory / f"{k:04d}.jpg"), image)
    return directory


def video_and_frame_dir(root: Path, frames_each: int) -> tuple[Path, Path]:
    """A video of vtest's first ``frames_each`` frames and a directory of the next ``frames_each``."""
    frames = vtest_frames(2 * frames_each)
    return (
        write_video(root / "entrance.avi", frames[:frames_each]),
        write_frame_dir(root / "hall", frames[frames_each:]),
    )
