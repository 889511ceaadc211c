"""Which of a camera's frames are embedded when ReID runs on one frame in ``interval``
(``ReidSettings.reid_interval``).

Each model instance counts the frames it serves: with several reid instances (``reid_instances``) a
camera's frames spread over them, each instance embeds one in ``interval`` of its share, so still one in
``interval`` of the camera's frames, not always evenly spaced.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

from pipeline_models.cameras import CameraId

#: Most cameras whose frame counts are kept; the one seen longest ago is forgotten first (it then
#: restarts at its phase, which only moves its next embedded frame).
MAX_CAMERAS = 65536


def phase(camera: CameraId, interval: int) -> int:
    """The camera's own offset in ``0..interval-1``: the same on every server and restart."""
    return zlib.crc32(str(camera).encode()) % interval


class EmbeddingTurns:
    """Per camera, a count of its frames: a frame is embedded when its count plus the camera's
    :func:`phase` is a multiple of ``interval``, so cameras that started together spread their embedded
    frames over the interval and each batch holds about ``1 / interval`` of its crops.

    Not thread-safe: one caller (a model's ``execute``).
    """

    def __init__(self, interval: int, max_cameras: int = MAX_CAMERAS) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1, got {interval!r}")
        if max_cameras < 1:
            raise ValueError(f"max_cameras must be >= 1, got {max_cameras}")
        self.interval = interval
        self.max_cameras = max_cameras
        self._counts: OrderedDict[CameraId, int] = OrderedDict()

    def take(self, camera: CameraId) -> bool:
        """Counts one frame of ``camera``; whether its boxes are embedded."""
        if self.interval == 1:
            return True
        count = self._counts.pop(camera, phase(camera, self.interval))
        self._counts[camera] = (count + 1) % self.interval
        if len(self._counts) > self.max_cameras:
            self._counts.popitem(last=False)
        return count == 0
