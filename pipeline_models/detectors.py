"""Detector runners (ONNX Runtime on CPU) behind one small interface.

Each family splits into three stages, because the Triton ensemble runs them as separate models:

- ``preprocess(image_bgr) -> (tensor, meta)`` with ``meta = float32 [3] = (orig_h, orig_w, ratio)``;
- ``infer(batch) -> raw`` one float32 tensor ``(B, A, K)`` per batch;
- ``postprocess(raw_one, meta) -> Detections`` (persons only by default).

``detect(images)`` composes them with one batched ``infer``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pipeline_models.postprocess import BoxFilters, pack_ssd_outputs, postprocess_ssd, postprocess_yolox
from pipeline_models.preprocess import SSD_INPUT_HW, image_meta, letterbox, resize_rgb
from pipeline_models.types import Detections

log = logging.getLogger(__name__)

#: Name of the embedded person detector (SSDLite-MobileNetV2, converted by ``make setup``).
EMBEDDED_MODEL = "ssdlite"
MODELS_DIR_ENV = "PIPELINE_MODELS_DIR"


def models_dir() -> Path:
    """Where converted models live: ``$PIPELINE_MODELS_DIR`` or ``<repo>/.cache/models``."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".cache" / "models"


class Detector(Protocol):
    """What every detector family offers."""

    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[np.ndarray, npt.NDArray[np.float32]]: ...

    def infer(self, batch: np.ndarray) -> npt.NDArray[np.float32]: ...

    def postprocess(self, raw_one: npt.NDArray[np.float32], meta: npt.NDArray[np.float32]) -> Detections: ...

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]: ...


def make_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """CPU ONNX Runtime session with ``threads`` intra-op threads (one inter-op thread)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _detect(det: Detector, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
    if len(images) == 0:
        return []
    tensors, metas = zip(*(det.preprocess(image) for image in images))
    raw = det.infer(np.stack(tensors))
    return [det.postprocess(raw[i], metas[i]) for i in range(len(images))]


@dataclass
class YoloxDetector:
    """YOLOX with a raw head (``decode_in_inference=False``), input float32 ``(B, 3, H, W)``.

    Attributes:
        model_path: ONNX file; the input size is read from its (static) H and W.
        legacy: ByteTrack/old-YOLOX normalisation (True) or current YOLOX (False).
        conf_thresh: minimum ``obj * cls`` score.
        nms_thresh: NMS IoU threshold.
        person_class: class id returned (None: all classes).
        class_agnostic: one NMS over all classes.
        filters: optional ByteTrack demo filters.
        threads: ONNX Runtime intra-op threads.
    """

    model_path: str | Path
    legacy: bool = True
    conf_thresh: float = 0.5
    nms_thresh: float = 0.7
    person_class: int | None = 0
    class_agnostic: bool = False
    filters: BoxFilters = field(default_factory=BoxFilters)
    threads: int = 1
    input_hw: tuple[int, int] = field(init=False)
    _session: ort.InferenceSession = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._session = make_session(self.model_path, self.threads)
        shape = self._session.get_inputs()[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ValueError(
                f"{self.model_path}: expected a (B, 3, H, W) input with static H, W, got {shape}"
            )
        self.input_hw = (int(shape[2]), int(shape[3]))

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``(3, H, W)`` float32 letterboxed tensor and meta."""
        tensor, ratio = letterbox(image_bgr, self.input_hw, legacy=self.legacy)
        return tensor, image_meta(image_bgr, ratio)

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(B, 3, H, W)`` float32 -> raw head ``(B, A, 5 + C)`` float32."""
        name = self._session.get_inputs()[0].name
        return np.asarray(
            self._session.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0], np.float32
        )

    def postprocess(self, raw_one: npt.NDArray[np.float32], meta: npt.NDArray[np.float32]) -> Detections:
        return postprocess_yolox(
            raw_one,
            meta,
            conf_thresh=self.conf_thresh,
            nms_thresh=self.nms_thresh,
            input_hw=self.input_hw,
            keep_classes=None if self.person_class is None else (self.person_class,),
            class_agnostic=self.class_agnostic,
            filters=self.filters,
        )

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        return _detect(self, images)


@dataclass
class SsdDetector:
    """TF object-detection SSD exported to ONNX: input uint8 ``(B, 300, 300, 3)`` RGB, outputs
    ``num_detections, detection_boxes, detection_scores, detection_classes`` packed by ``infer`` into
    one ``(B, 100, 6)`` float32 tensor.

    Attributes:
        model_path: ONNX file.
        conf_thresh: minimum score.
        person_class: class id returned (None: all classes); 1 in the COCO label map.
        filters: optional ByteTrack demo filters.
        threads: ONNX Runtime intra-op threads.
    """

    model_path: str | Path
    conf_thresh: float = 0.5
    person_class: int | None = 1
    filters: BoxFilters = field(default_factory=BoxFilters)
    threads: int = 1
    input_hw: tuple[int, int] = SSD_INPUT_HW
    _session: ort.InferenceSession = field(init=False, repr=False)
    _outputs: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._session = make_session(self.model_path, self.threads)
        names = {o.name.split(":")[0]: o.name for o in self._session.get_outputs()}
        wanted = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(f"{self.model_path}: not a TF object-detection SSD, missing outputs {missing}")
        self._outputs = [names[w] for w in wanted]

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
        """``(300, 300, 3)`` uint8 RGB and meta (ratio 1: boxes come back normalised)."""
        return resize_rgb(image_bgr, self.input_hw), image_meta(image_bgr, 1.0)

    def infer(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``(B, 300, 300, 3)`` uint8 -> ``(B, 100, 6)`` float32 ``y1, x1, y2, x2, score, class``."""
        name = self._session.get_inputs()[0].name
        outs = self._session.run(self._outputs, {name: np.ascontiguousarray(batch, np.uint8)})
        return pack_ssd_outputs(*outs)

    def postprocess(self, raw_one: npt.NDArray[np.float32], meta: npt.NDArray[np.float32]) -> Detections:
        return postprocess_ssd(raw_one, meta, self.conf_thresh, self.person_class, self.filters)

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        return _detect(self, images)


def guess_family(model_path: str | Path) -> str:
    """``"ssd"`` for a uint8 NHWC input, ``"yolox"`` for a float NCHW one."""
    sess = make_session(model_path, 1)
    inp = sess.get_inputs()[0]
    if inp.type == "tensor(uint8)":
        return "ssd"
    if len(inp.shape) == 4 and inp.shape[1] == 3:
        return "yolox"
    raise ValueError(f"{model_path}: cannot tell the detector family from input {inp.type} {inp.shape}")


def load_detector(model: str = EMBEDDED_MODEL, family: str | None = None, **options: object) -> Detector:
    """Build a detector.

    Args:
        model: ``"ssdlite"`` (the embedded person detector) or a path to an ONNX file.
        family: ``"ssd"`` or ``"yolox"``; guessed from the model's input when None.
        **options: fields of ``SsdDetector`` / ``YoloxDetector`` (``conf_thresh``, ``threads``, ...).

    Raises:
        FileNotFoundError: if the model file is missing.
        ValueError: for an unknown family.
    """
    path = models_dir() / "ssdlite.onnx" if model == EMBEDDED_MODEL else Path(model)
    if not path.is_file():
        hint = " (run `make setup` to convert the embedded detector)" if model == EMBEDDED_MODEL else ""
        raise FileNotFoundError(f"model not found: {path}{hint}")
    family = family or ("ssd" if model == EMBEDDED_MODEL else guess_family(path))
    log.info("loading %s detector from %s", family, path)
    if family == "ssd":
        return SsdDetector(path, **options)  # type: ignore[arg-type]
    if family == "yolox":
        return YoloxDetector(path, **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown detector family {family!r} (expected 'ssd' or 'yolox')")
