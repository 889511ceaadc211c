"""ByteTrack tracking: Kalman filter, association, per-camera trackers and their sessions."""

from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.tracking.sessions import TrackerSessions, UnknownSequenceError

__all__ = ["ByteTracker", "TrackerSessions", "UnknownSequenceError"]
