"""The ensemble's composition run in-process: the reference the Triton ``pipeline`` must equal.

Same stages and the same code as the server (decode -> codec -> runner -> codec -> one ByteTracker per
camera), with no Triton in between; used by tests and by the server-overhead benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_config import paths
from pipeline_models.detectors import Detector, OnnxRunner, codec_from_parameters
from pipeline_models.preprocess import decode_image
from pipeline_models.settings import TrackerConfig, from_parameters
from pipeline_models.tracking import ByteTracker
from pipeline_models.types import Detections, Tracks


class LocalPipeline:
    """JPEG bytes in, tracks out, per camera.

    Args:
        detector: the codec and runner the server's profile uses.
        tracker_config: the tracker parameters of the server's profile.
    """

    def __init__(self, detector: Detector, tracker_config: TrackerConfig) -> None:
        self.detector = detector
        self.tracker_config = tracker_config
        self._trackers: dict[int, ByteTracker] = {}

    @classmethod
    def from_profile(cls, profile: str = "cpu", model: str | None = None) -> LocalPipeline:
        """The composition a server profile runs, with the same parameters (``configs/profiles.toml``).

        Args:
            profile: the profile name.
            model: detector weights; the profile's ``detector_model`` when None.
        """
        from pipeline_config.render import load_profile  # tomllib: only where profiles are read

        resolved = load_profile(profile)
        parameters = resolved.parameters
        threads = int(parameters["detector_threads"])  # what the server's detector model runs with
        runner = OnnxRunner(model or paths.project_root() / resolved.detector_model, threads)
        detector = Detector(codec_from_parameters(parameters), runner)
        return cls(detector, from_parameters(TrackerConfig, parameters))

    def detect(self, images: Sequence[bytes]) -> list[Detections]:
        """Detections for each encoded image, in one batched detector run."""
        return self.detector.detect([decode_image(data) for data in images])

    def track(self, camera: int | str, image: bytes, start: bool = False, steps: int = 1) -> Tracks:
        """Tracks of one camera's next frame, ``steps`` frames after the last (more than 1: frames were
        skipped, as the server does for a jump in ``frame_index``); ``start`` (or a new camera) begins a
        fresh tracker."""
        if start or camera not in self._trackers:
            self._trackers[camera] = ByteTracker(self.tracker_config)
        return self._trackers[camera].update(self.detect([image])[0], steps)
