"""Image preprocessing for the detector families: pure functions of arrays.

YOLOX letterbox (both variants, as in YOLOX's ``preproc``): resize by ``r = min(h / H, w / W)`` with
``cv2.INTER_LINEAR`` to ``(int(H * r), int(W * r))``, place it top-left on an ``(h, w)`` canvas filled
with 114, then

- *legacy* (ByteTrack's ``preproc``, what ``bytetrack_*`` weights were trained with): BGR -> RGB,
  ``/ 255``, minus ImageNet mean ``(0.485, 0.456, 0.406)``, divided by std ``(0.229, 0.224, 0.225)``;
- *modern* (current YOLOX ``ValTransform(legacy=False)``): nothing more, channels stay BGR and values
  stay in ``[0, 255]``.

Both return CHW float32. Boxes found on the letterboxed image map back by dividing by ``r``. A side that
would scale below one pixel (a 1x8192 image) is kept at one pixel (:func:`letterbox_size`).

SSD (TensorFlow object-detection export): plain resize (no aspect kept) to 300x300, RGB, uint8 HWC.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.image_checks import DEFAULT_LIMITS, check_encoded_image
from pipeline_models.letterbox_geometry import letterbox_ratio, letterbox_size
from pipeline_models.settings import ImageLimits, InputSettings

PAD_VALUE = 114
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SSD_INPUT_HW = (300, 300)
#: Stored pixel grid, whatever the EXIF orientation says: boxes are in the pixels as sent, as on the GPU
#: path (nvJPEG ignores EXIF).
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
#: libjpeg warnings that mean pixels are missing or wrong (it writes the first warning of a decode to
#: stderr; OpenCV returns the image regardless, the missing part grey). "extraneous bytes before marker"
#: (junk between segments, common from cameras) is not among them.
LIBJPEG_DAMAGE_WARNINGS = (
    "Premature end of JPEG file",
    "premature end of data segment",
    "bad Huffman code",
    "instead of RST",
    "Inconsistent progression sequence",
    "Corrupt JPEG data: bad",
)


def _check_bgr(image_bgr: npt.NDArray[np.uint8]) -> None:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ValueError(f"empty image {image_bgr.shape}")


def letterbox(
    image_bgr: npt.NDArray[np.uint8], input_hw: tuple[int, int], legacy: bool = InputSettings.legacy
) -> tuple[npt.NDArray[np.float32], float]:
    """Letterbox one image for YOLOX.

    Args:
        image_bgr: ``(H, W, 3)`` uint8 BGR image (as read by OpenCV).
        input_hw: model input ``(h, w)``.
        legacy: True for ByteTrack/old-YOLOX normalisation (RGB, /255, ImageNet mean/std),
            False for current YOLOX (BGR, 0..255).

    Returns:
        ``(3, h, w)`` float32 tensor and the ratio ``r``; original pixels = letterboxed pixels / r.
    """
    _check_bgr(image_bgr)
    height, width = image_bgr.shape[:2]
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    ratio = letterbox_ratio((height, width), (in_h, in_w))
    new_h, new_w = letterbox_size((height, width), ratio)
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if not legacy:
        return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32), ratio
    # One OpenCV pass: swap to RGB, (x - 255 * mean) * (1 / (255 * std)) per channel, HWC -> NCHW float32.
    params = cv2.dnn.Image2BlobParams()
    params.swapRB = True
    params.ddepth = cv2.CV_32F
    params.size = (in_w, in_h)
    params.mean = (*(float(v) for v in 255.0 * IMAGENET_MEAN), 0.0)
    params.scalefactor = (*(float(v) for v in 1.0 / (255.0 * IMAGENET_STD)), 0.0)
    return cv2.dnn.blobFromImageWithParams(canvas, params)[0], ratio


def resize_rgb(
    image_bgr: npt.NDArray[np.uint8], input_hw: tuple[int, int] = SSD_INPUT_HW
) -> npt.NDArray[np.uint8]:
    """Plain resize for SSD-style models (aspect ratio not kept; boxes come back normalised).

    Args:
        image_bgr: ``(H, W, 3)`` uint8 BGR image.
        input_hw: model input ``(h, w)``.

    Returns:
        ``(h, w, 3)`` uint8 RGB image.
    """
    _check_bgr(image_bgr)
    resized = cv2.resize(image_bgr, (int(input_hw[1]), int(input_hw[0])), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized[:, :, ::-1])


def image_meta(image_bgr: npt.NDArray[np.uint8], ratio: float) -> npt.NDArray[np.float32]:
    """``float32 [3] = (orig_h, orig_w, ratio)``: what postprocessing needs to map boxes back."""
    return np.array([image_bgr.shape[0], image_bgr.shape[1], ratio], dtype=np.float32)


T = TypeVar("T")


class _Fd2Capture:
    """What C code (libjpeg) writes to file descriptor 2 during a call, kept in a temporary file.

    The descriptor is process-wide, so calls are serialised and anything else written meanwhile (another
    thread's log line) is written back to the real stderr afterwards.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open for the process's lifetime
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: object) -> tuple[T, str]:
        """``(fn(*args), what was written to descriptor 2 meanwhile)``."""
        with self._lock:
            sys.stderr.flush()
            self._file.seek(0)
            self._file.truncate()
            saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
            try:
                result = fn(*args)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            self._file.seek(0)
            return result, self._file.read().decode("utf-8", "replace")


_FD2 = _Fd2Capture()


def decode_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> npt.NDArray[np.uint8]:
    """Check (:func:`check_encoded_image`) then decode a JPEG or PNG to ``(H, W, 3)`` uint8 BGR.

    Grayscale, CMYK, 16-bit and alpha images are converted to 8-bit BGR. EXIF orientation is ignored:
    pixels (and so boxes) are in the stored grid. A JPEG whose decode makes libjpeg warn that data is
    missing or damaged (a cut file with an end marker appended decodes half grey) is refused.

    Raises:
        InvalidInputError: the bytes break a limit, are not JPEG/PNG, or do not decode cleanly.
    """
    fmt, _, _ = check_encoded_image(data, limits)
    buffer = np.frombuffer(data, np.uint8)
    if fmt == "jpeg":
        image, warnings = _FD2.call(cv2.imdecode, buffer, IMREAD_FLAGS)
        damage = [line for line in warnings.splitlines() if any(w in line for w in LIBJPEG_DAMAGE_WARNINGS)]
        other = "".join(f"{line}\n" for line in warnings.splitlines() if line not in damage)
        if other:
            os.write(2, other.encode())
        if damage:
            raise InvalidInputError(
                f"IMAGE is a damaged JPEG (the decoder says: {damage[0].strip()}; {len(data)} bytes)",
                Reason.CORRUPT,
            )
    else:
        image = cv2.imdecode(buffer, IMREAD_FLAGS)
    if image is None:
        raise InvalidInputError(
            f"IMAGE is not a decodable JPEG/PNG ({len(data)} bytes, starts {data[:4].hex()})", Reason.CORRUPT
        )
    return image
