"""The pipeline's own Prometheus metrics, without Triton: names, buckets and bounded camera labels.

``triton.custom_metrics`` turns these into python-backend metrics (``pb_utils.MetricFamily``); everything here is
plain Python so the bounding rules are tested on their own.

Per-camera series are bounded: the first ``max_cameras`` cameras a model sees get their own label
(``camera="17"``); later cameras are counted together under ``camera="other"`` while those labels are
taken. A camera's label is released when its sequence ends or it has been idle for ``idle_timeout_s``,
and the next new camera takes the free slot. So a metric has at most ``max_cameras + 2`` camera labels
(``other`` and ``none``, the stateless ``detect`` ensemble's requests, which carry no camera).
Camera ids are integers or strings (a string ``sequence_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline_models.errors import Reason, reason_for

# Gauges (tracker): names kept from the first release.
LIVE_CAMERAS = "pipeline_live_cameras"
LIVE_TRACKS = "pipeline_live_tracks"
# Counters per camera.
FRAMES = "pipeline_frames_total"
DECODE_FAILURES = "pipeline_decode_failures_total"
# Counter (identities, ReID on): global identities created since the server started.
IDENTITIES_CREATED = "pipeline_identities_created_total"
# Histogram per stage (exposed as <name>_bucket, <name>_sum, <name>_count).
STAGE_DURATION = "pipeline_stage_duration_us"

#: Stages timed by our python models. The detector is not one: Triton already reports it per model
#: (``nv_inference_compute_infer_duration_us{model="detector"}``).
STAGES = ("decode", "resize", "postprocess", "track", "reid_crop", "reid_embed", "identify")
#: Histogram bucket bounds in microseconds (about x2.5 apart, 50 us to 1 s).
STAGE_BUCKETS_US = tuple(
    float(bound) for bound in (50, 100, 250, 500, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 1e6)
)

OTHER_CAMERA = "other"
NO_CAMERA = "none"

#: ``reason`` label values of ``pipeline_decode_failures_total``: a small fixed set.
REASONS = tuple(reason.value for reason in Reason)


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label (one of ``REASONS``) for an exception that refused a frame."""
    return reason_for(exc).value


@dataclass
class CameraLabels:
    """Bounded ``camera`` label values for per-camera series.

    Args:
        max_cameras: how many cameras may hold their own label at once (>= 0).
        idle_timeout_s: a labelled camera not seen for longer than this is released by :meth:`sweep`.
    """

    max_cameras: int
    idle_timeout_s: float
    _last_seen: dict[int | str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.max_cameras < 0:
            raise ValueError(f"max_cameras must be >= 0, got {self.max_cameras}")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, got {self.idle_timeout_s}")

    def label(self, camera: int | str, now: float) -> str:
        """The label of ``camera`` seen at ``now``: its id while it holds a slot (taking a free one), else
        ``"other"``; ``"none"`` for camera 0 or "" (no sequence)."""
        if not camera:
            return NO_CAMERA
        if camera in self._last_seen or len(self._last_seen) < self.max_cameras:
            self._last_seen[camera] = now
            return str(camera)
        return OTHER_CAMERA

    def release(self, camera: int | str) -> str | None:
        """Frees ``camera``'s slot; returns the label it held, or None when it had none."""
        return str(camera) if self._last_seen.pop(camera, None) is not None else None

    def sweep(self, now: float) -> list[str]:
        """Releases the cameras idle for longer than ``idle_timeout_s``; returns their labels."""
        idle = [camera for camera, seen in self._last_seen.items() if now - seen > self.idle_timeout_s]
        return [label for camera in idle if (label := self.release(camera)) is not None]

    def __len__(self) -> int:
        return len(self._last_seen)
