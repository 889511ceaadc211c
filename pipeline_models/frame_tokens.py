"""Per-frame tokens that tie each internal step's input to the step before it, so the internal models
of an ensemble refuse what did not come from it.

Every composing model of an ensemble can also be called on its own, and Triton forwards the client's
sequence flags and parameters to every step, so nothing in a request tells a step who sent it. Instead
each step signs what it hands on with a per-server secret, bound to the camera (the correlation id), and
the next step checks it:

- ``preprocess`` signs the frame's ``META`` (original size and scale) -> ``_PRE_TOKEN``;
- ``postprocess`` checks that token against ``META`` and the camera, then signs its boxes and scores
  (``gpu_detector`` signs them straight from the JPEG) -> ``_DET_TOKEN``;
- ``tracker`` checks that token against the boxes, scores and camera before it touches any state;
- with ReID on, ``tracker`` signs its track ids and boxes -> ``_TRK_TOKEN`` (checked by ``reid``), and
  ``reid`` signs the track ids and their embeddings -> ``_EMB_TOKEN`` (checked by ``identities`` before
  it touches the gallery);
- with appearance association on, ``reid`` checks the detections' token, signs the detections and their
  embeddings -> ``_DET_EMB_TOKEN`` (checked by ``tracker``), and ``tracker`` signs its track ids and
  their embeddings -> ``_EMB_TOKEN`` (checked by ``identities``).

So the tracker only ever sees detections that postprocess (or gpu_detector) made for that very camera,
at most ``max_detections`` finite boxes; a forged, replayed-for-another-camera or missing token is
refused with reason ``forbidden``. The detector in between is not signed (a TensorRT plan cannot carry a
token): a client that calls it directly gets compute, not state. The key is a keyed BLAKE2b (RFC 7693),
16-byte tags; the secret is random per server start (``PIPELINE_MODEL_SECRET``, set by the launcher).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from pipeline_models.errors import InvalidInputError, Reason

#: The environment variable that carries the server's secret (hex) to every model process.
SECRET_ENV = "PIPELINE_MODEL_SECRET"
SECRET_BYTES = 32
TOKEN_BYTES = 16
#: What a token vouches for: a frame's letterbox geometry, its detections, its tracks (ReID on: the
#: tracker signs camera, TRACK_IDS and TRACK_BOXES for reid) or its embeddings (reid signs camera,
#: TRACK_IDS and EMBEDDINGS for identities).
PREPROCESSED = b"preprocessed"
DETECTIONS = b"detections"
TRACKS = b"tracks"
EMBEDDINGS = b"embeddings"
#: Appearance association on: reid signs camera, DET_BOXES, DET_SCORES and EMBEDDINGS for the tracker.
DETECTION_EMBEDDINGS = b"det-embeddings"


def new_secret() -> str:
    """A fresh random secret, hex-encoded (for ``SECRET_ENV``)."""
    return secrets.token_hex(SECRET_BYTES)


def load_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """The server's secret from ``SECRET_ENV``.

    Raises:
        ValueError: it is missing or not ``SECRET_BYTES`` bytes of hex.
    """
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise ValueError(
            f"{SECRET_ENV} must hold {SECRET_BYTES} random bytes as hex: start the server with "
            "`python -m pipeline_server.server` (or `make serve`), which sets it"
        )
    return secret


def sign(secret: bytes, purpose: bytes, camera: int | str, *arrays: npt.NDArray) -> npt.NDArray[np.uint8]:
    """The ``TOKEN_BYTES`` uint8 token of ``arrays`` (dtype, shape and bytes each) for ``camera``."""
    mac = hashlib.blake2b(key=secret, digest_size=TOKEN_BYTES, person=purpose[:16])
    mac.update(f"{type(camera).__name__}:{camera}".encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        mac.update(f"|{array.dtype.str}{array.shape}|".encode())
        mac.update(array.tobytes())
    return np.frombuffer(mac.digest(), np.uint8).copy()


def verify(
    secret: bytes, token: npt.NDArray, purpose: bytes, camera: int | str, *arrays: npt.NDArray
) -> None:
    """Checks ``token`` against :func:`sign` of the same values, in constant time.

    Raises:
        InvalidInputError: reason ``forbidden`` when it does not match.
    """
    expected = sign(secret, purpose, camera, *arrays)
    given = np.asarray(token).reshape(-1)
    if given.dtype != np.uint8 or not hmac.compare_digest(given.tobytes(), expected.tobytes()):
        raise InvalidInputError(
            "internal model called from outside the pipeline (its frame token does not match); "
            "send frames to the 'pipeline' or 'detect' ensemble",
            Reason.FORBIDDEN,
        )
