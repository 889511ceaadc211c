"""A camera's annotated H.264 video (``pipeline-track-cameras --video``): the tracks as
:mod:`pipeline_client.annotate` draws them (boxes, ids, global ids, names, trails), plus the camera's lines
and zones with their counts, written through :class:`pipeline_client.annotate.VideoSink`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pipeline_client.annotate import Trails, VideoSink, draw_tracks, label_name, track_labels, update_trails
from pipeline_client.fleet.config import CameraConfig
from pipeline_client.triton_client import FrameResult

LINE_COLOR = (0, 255, 255)  # BGR yellow
ZONE_COLOR = (255, 128, 0)  # BGR blue


def _label(
    canvas: npt.NDArray[np.uint8], text: str, at: tuple[int, int], color: tuple[int, int, int]
) -> None:
    cv2.putText(canvas, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 1, cv2.LINE_AA)


def draw_counting(
    image: npt.NDArray[np.uint8], camera: CameraConfig, snapshot: Mapping[str, Mapping[str, Any]]
) -> npt.NDArray[np.uint8]:
    """The camera's lines (with ``in``/``out``) and zones (with occupancy and entries) on a copy of ``image``.

    Args:
        image: ``(H, W, 3)`` BGR frame; not modified.
        camera: its lines and zones.
        snapshot: counts.json's entry for the camera (``CameraCounts.snapshot``).
    """
    canvas = image.copy()
    for zone in camera.zones:
        polygon = np.round(np.asarray(zone.polygon)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [polygon], True, ZONE_COLOR, 2, cv2.LINE_AA)
        value = snapshot.get(zone.name, {})
        text = f"{label_name(zone.name)}: {value.get('occupancy', 0)} now, {value.get('entries', 0)} in"
        x, y = polygon.reshape(-1, 2).min(axis=0)
        _label(canvas, text, (int(x) + 4, int(y) + 20), ZONE_COLOR)
    for line in camera.lines:
        (x1, y1), (x2, y2) = (tuple(int(round(v)) for v in p) for p in line.points)
        cv2.line(canvas, (x1, y1), (x2, y2), LINE_COLOR, 2, cv2.LINE_AA)
        value = snapshot.get(line.name, {})
        text = f"{label_name(line.name)}: in {value.get('in', 0)} out {value.get('out', 0)}"
        _label(canvas, text, ((x1 + x2) // 2 + 6, (y1 + y2) // 2), LINE_COLOR)
    return canvas


class CameraVideo:
    """One camera's annotated video; ``write`` each frame with the server's answer (use as a context
    manager: leaving it finishes the file, on SIGTERM too)."""

    def __init__(self, path: str | Path, fps: float, camera: CameraConfig) -> None:
        self.sink = VideoSink(path, fps)
        self.camera = camera
        self._trails: Trails = {}

    def write(
        self,
        image: npt.NDArray[np.uint8],
        ts: float,
        result: FrameResult,
        snapshot: Mapping[str, Mapping[str, Any]],
    ) -> None:
        tracks = result.tracks
        self._trails = update_trails(self._trails, tracks.ids, tracks.xyxy)
        labels = track_labels(tracks.ids, result.global_ids, result.names)
        canvas = draw_tracks(
            draw_counting(image, self.camera, snapshot), tracks.ids, tracks.xyxy, self._trails, labels=labels
        )
        self.sink.write(canvas, ts)

    def __enter__(self) -> CameraVideo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sink.close()
