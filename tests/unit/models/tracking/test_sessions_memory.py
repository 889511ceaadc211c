"""10 000 short-lived cameras (ended, or abandoned and swept) leave TrackerSessions' memory flat."""

import gc

import numpy as np

from pipeline_models.settings import TrackerConfig
from pipeline_models.tracking.sessions import TrackerSessions
from pipeline_models.types import Detections

BOXES = np.array([[10, 10, 50, 90], [200, 40, 240, 140]], np.float32)


def detections(shift: float) -> Detections:
    return Detections(BOXES + shift, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64))


def run_cameras(sessions: TrackerSessions, first: int, count: int, clock: list[float]) -> None:
    """Cameras of 2 frames each; even ones send END, odd ones just stop and are swept later."""
    for camera in range(first, first + count):
        clock[0] += 0.001
        sessions.start(camera, clock[0])
        for frame in range(2):
            sessions.update(camera, detections(frame), clock[0])
        if camera % 2 == 0:
            sessions.end(camera)
        sessions.sweep(clock[0])


def test_ten_thousand_short_lived_cameras_leave_memory_flat():
    sessions = TrackerSessions(TrackerConfig(), idle_timeout_s=0.5)
    clock = [0.0]
    run_cameras(sessions, 1, 1000, clock)  # warm-up: caches, interned objects
    clock[0] += 1.0
    sessions.sweep(clock[0])
    gc.collect()
    before = len(gc.get_objects())
    run_cameras(sessions, 10_001, 10_000, clock)
    clock[0] += 1.0
    sessions.sweep(clock[0])
    gc.collect()
    after = len(gc.get_objects())
    assert len(sessions) == 0
    assert after - before < 100, f"{after - before} more live objects after 10 000 cameras"
