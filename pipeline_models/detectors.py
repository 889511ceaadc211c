"""Detectors behind one small interface: a session-free *codec* (pre/post-processing) plus a *runner*.

Each family splits into three stages, because the Triton ensemble runs them as separate models:

- ``codec.preprocess(image_bgr) -> (tensor, meta)`` with ``meta = float32 [3] = (orig_h, orig_w, ratio)``;
- ``runner.infer(batch) -> raw``: one float32 tensor ``(B, A, K)`` per batch (ONNX Runtime on CPU here,
  a TensorRT plan in the ``tensorrt`` profile);
- ``codec.postprocess(raw_one, meta) -> Detections`` (persons only by default).

``Detector.detect(images)`` composes them with one batched ``infer``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pipeline_models.postprocess import BoxFilters, pack_ssd_outputs, postprocess_ssd, postprocess_yolox
from pipeline_models.preprocess import SSD_INPUT_HW, image_meta, letterbox, resize_rgb
from pipeline_models.settings import DECODE, Decode, InputSettings, SsdDecode, from_parameters
from pipeline_models.types import Detections

log = logging.getLogger(__name__)

FAMILIES = ("ssd", "yolox")
SSD_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


class Codec(Protocol):
    """Pre- and post-processing of one detector family; no model session."""

    input_hw: tuple[int, int]

    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[np.ndarray, npt.NDArray[np.float32]]: ...

    def postprocess(self, raw_one: npt.NDArray[np.float32], meta: npt.NDArray[np.float32]) -> Detections: ...


@dataclass(frozen=True)
class YoloxCodec:
    """YOLOX with a raw head (``decode_in_inference=False``), input float32 ``(B, 3, H, W)``.

    Attributes:
        input_hw: model input ``(H, W)``.
        legacy: ByteTrack/old-YOLOX normalisation (True) or current YOLOX (False).
        conf_thresh: minimum ``obj * cls`` score.
        nms_thresh: NMS IoU threshold.
        person_class: class id returned (None: all classes).
        class_agnostic: one NMS over all classes.
        filters: optional ByteTrack demo filters.
        max_detections: most detections per image after NMS (the highest scores).
    """

    input_hw: tuple[int, int] = (640, 640)
    legacy: bool = InputSettings.legacy
    conf_thresh: float = Decode.conf_thresh
    nms_thresh: float = Decode.nms_thresh
    person_class: int | None = Decode.person_class
    class_agnostic: bool = False
    filters: BoxFilters = field(default_factory=BoxFilters)
    max_detections: int = Decode.max_detections

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``(3, H, W)`` float32 letterboxed tensor and meta."""
        tensor, ratio = letterbox(image_bgr, self.input_hw, legacy=self.legacy)
        return tensor, image_meta(image_bgr, ratio)

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
            max_detections=self.max_detections,
        )


@dataclass(frozen=True)
class SsdCodec:
    """TF object-detection SSD: uint8 ``(B, 300, 300, 3)`` RGB in, packed ``(B, 100, 6)`` out.

    Attributes:
        conf_thresh: minimum score.
        person_class: class id returned (None: all classes); 1 in the COCO label map.
        filters: optional ByteTrack demo filters.
        max_detections: most detections per image (the highest scores).
    """

    conf_thresh: float = SsdDecode.conf_thresh
    person_class: int | None = SsdDecode.person_class
    filters: BoxFilters = field(default_factory=BoxFilters)
    input_hw: tuple[int, int] = SSD_INPUT_HW
    max_detections: int = SsdDecode.max_detections

    def preprocess(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
        """``(300, 300, 3)`` uint8 RGB and meta (ratio 1: boxes come back normalised)."""
        return resize_rgb(image_bgr, self.input_hw), image_meta(image_bgr, 1.0)

    def postprocess(self, raw_one: npt.NDArray[np.float32], meta: npt.NDArray[np.float32]) -> Detections:
        return postprocess_ssd(
            raw_one, meta, self.conf_thresh, self.person_class, self.filters, self.max_detections
        )


def make_codec(family: str, **options: object) -> Codec:
    """The codec of ``family`` (``"ssd"`` or ``"yolox"``) with the given fields.

    Raises:
        ValueError: for an unknown family.
    """
    if family == "ssd":
        return SsdCodec(**options)  # type: ignore[arg-type]
    if family == "yolox":
        return YoloxCodec(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown detector family {family!r} (expected one of {FAMILIES})")


def input_codec(parameters: Mapping[str, str]) -> Codec:
    """The codec for preprocessing alone, from the :class:`InputSettings` parameters (family, input size,
    legacy); its decode fields keep their defaults, which preprocessing never reads."""
    inputs = from_parameters(InputSettings, parameters)
    if inputs.family == "ssd":
        return SsdCodec(input_hw=inputs.input_hw)
    return YoloxCodec(input_hw=inputs.input_hw, legacy=inputs.legacy)


def codec_from_parameters(parameters: Mapping[str, str]) -> Codec:
    """The codec of the profile's family: :class:`InputSettings` and the family's decode settings.

    Raises:
        ValueError: a parameter is missing or invalid, named in the message.
    """
    inputs = from_parameters(InputSettings, parameters)
    decode = from_parameters(DECODE[inputs.family], parameters)
    common = {"conf_thresh": decode.conf_thresh, "person_class": decode.person_class,
              "max_detections": decode.max_detections, "input_hw": inputs.input_hw}
    if inputs.family == "ssd":  # the SSD graph runs its own NMS and normalisation
        return SsdCodec(**common)
    return YoloxCodec(**common, legacy=inputs.legacy, nms_thresh=decode.nms_thresh)


def make_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """CPU ONNX Runtime session with ``threads`` intra-op threads (one inter-op thread).

    The intra-op threads sleep instead of spin-waiting between runs: in the server the detector shares
    the cores with the other stages' processes, and spinning threads starve them.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Runs a detector ONNX file and returns its raw output as one float32 ``(B, A, K)`` tensor.

    The family is read from the model: a uint8 NHWC input is a TF object-detection SSD (its four outputs
    are packed by ``pack_ssd_outputs``), a float NCHW input is a YOLOX raw head.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        if not self.path.is_file():
            raise FileNotFoundError(f"model not found: {self.path}")
        self._session = make_session(self.path, threads)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        if inp.type == "tensor(uint8)":
            self.family = "ssd"
            names = {o.name.split(":")[0]: o.name for o in self._session.get_outputs()}
            missing = [w for w in SSD_OUTPUTS if w not in names]
            if missing:
                raise ValueError(f"{self.path}: not a TF object-detection SSD, missing outputs {missing}")
            self._outputs = [names[w] for w in SSD_OUTPUTS]
            self.input_hw = SSD_INPUT_HW
        elif len(inp.shape) == 4 and inp.shape[1] == 3 and all(isinstance(d, int) for d in inp.shape[2:]):
            self.family = "yolox"
            self._outputs = [self._session.get_outputs()[0].name]
            self.input_hw = (int(inp.shape[2]), int(inp.shape[3]))
        else:
            raise ValueError(f"{self.path}: cannot tell the detector family from input {inp.type} {inp.shape}")

    def infer(self, batch: np.ndarray) -> npt.NDArray[np.float32]:
        """``(B, ...)`` preprocessed tensors -> raw ``(B, A, K)`` float32."""
        dtype = np.uint8 if self.family == "ssd" else np.float32
        outs = self._session.run(self._outputs, {self._input: np.ascontiguousarray(batch, dtype)})
        return pack_ssd_outputs(*outs) if self.family == "ssd" else np.asarray(outs[0], np.float32)


@dataclass
class Detector:
    """A codec and a runner composed: ``detect(images) -> list[Detections]``."""

    codec: Codec
    runner: OnnxRunner

    @property
    def family(self) -> str:
        return self.runner.family

    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[np.ndarray, npt.NDArray[np.float32]]:
        return self.codec.preprocess(image_bgr)

    def infer(self, batch: np.ndarray) -> npt.NDArray[np.float32]:
        return self.runner.infer(batch)

    def postprocess(self, raw_one: npt.NDArray[np.float32], meta: npt.NDArray[np.float32]) -> Detections:
        return self.codec.postprocess(raw_one, meta)

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        """Detections per image, with one batched ``infer``."""
        if len(images) == 0:
            return []
        tensors, metas = zip(*(self.codec.preprocess(image) for image in images))
        raw = self.runner.infer(np.stack(tensors))
        return [self.codec.postprocess(raw[i], metas[i]) for i in range(len(images))]


def load_detector(
    model: str | Path, family: str | None = None, threads: int = 1, **options: object
) -> Detector:
    """Build a detector.

    Args:
        model: path to an ONNX file (``pipeline_config.paths.detector_model`` finds the embedded one).
        family: ``"ssd"`` or ``"yolox"``; read from the model's input when None.
        threads: ONNX Runtime intra-op threads.
        **options: codec fields (``conf_thresh``, ``legacy``, ``person_class``, ...).

    Raises:
        FileNotFoundError: if the model file is missing.
        ValueError: for an unknown family or one that disagrees with the model.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown detector family {family!r} (expected one of {FAMILIES})")
    runner = OnnxRunner(model, threads)
    if family is not None and family != runner.family:
        raise ValueError(f"{runner.path} is a {runner.family} model, not {family}")
    log.info("loading %s detector from %s", runner.family, runner.path)
    sizes = {"input_hw": runner.input_hw} if runner.family == "yolox" else {}
    codec = make_codec(runner.family, **sizes, **options)
    return Detector(codec, runner)
