"""Frame tokens: a token verifies only for the same secret, purpose, camera and array contents."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models import frame_tokens
from pipeline_models.errors import InvalidInputError, Reason

SECRET = bytes(range(32))
BOXES = np.array([[1, 2, 30, 40]], np.float32)
SCORES = np.array([0.9], np.float32)


def token() -> np.ndarray:
    return frame_tokens.sign(SECRET, frame_tokens.DETECTIONS, 7, BOXES, SCORES)


def test_a_token_verifies_for_what_it_signed() -> None:
    assert token().dtype == np.uint8 and token().shape == (frame_tokens.TOKEN_BYTES,)
    frame_tokens.verify(SECRET, token(), frame_tokens.DETECTIONS, 7, BOXES, SCORES)


@pytest.mark.parametrize(
    ("secret", "purpose", "camera", "arrays"),
    [
        (bytes(32), frame_tokens.DETECTIONS, 7, (BOXES, SCORES)),  # another server
        (SECRET, frame_tokens.PREPROCESSED, 7, (BOXES, SCORES)),  # another step's token
        (SECRET, frame_tokens.DETECTIONS, 8, (BOXES, SCORES)),  # another camera
        (SECRET, frame_tokens.DETECTIONS, "7", (BOXES, SCORES)),  # the string id "7" is not camera 7
        (SECRET, frame_tokens.DETECTIONS, 7, (BOXES + 1, SCORES)),  # moved boxes
        (SECRET, frame_tokens.DETECTIONS, 7, (BOXES.astype(np.float64), SCORES)),  # same values, other dtype
        (SECRET, frame_tokens.DETECTIONS, 7, (BOXES.reshape(2, 2), SCORES)),  # same bytes, other shape
        (SECRET, frame_tokens.DETECTIONS, 7, (np.concatenate([BOXES, BOXES]), np.repeat(SCORES, 2))),  # more
        (SECRET, frame_tokens.DETECTIONS, 7, (BOXES,)),  # scores dropped
    ],
    ids=["secret", "purpose", "camera", "string-camera", "moved", "dtype", "shape", "more-boxes", "fewer"],
)
def test_anything_else_is_refused_as_forbidden(secret, purpose, camera, arrays) -> None:
    with pytest.raises(InvalidInputError) as caught:
        frame_tokens.verify(secret, token(), purpose, camera, *arrays)
    assert caught.value.reason is Reason.FORBIDDEN


@pytest.mark.parametrize(
    "given", [np.zeros(16, np.uint8), token()[:8], token().astype(np.int16), np.array([], np.uint8)]
)
def test_forged_or_malformed_tokens_are_refused(given) -> None:
    with pytest.raises(InvalidInputError, match="outside the pipeline"):
        frame_tokens.verify(SECRET, given, frame_tokens.DETECTIONS, 7, BOXES, SCORES)


@pytest.mark.parametrize("value", ["", "zz" * 32, "ab" * 31, "ab" * 33])
def test_a_missing_or_malformed_secret_is_an_error(value) -> None:
    with pytest.raises(ValueError, match=frame_tokens.SECRET_ENV):
        frame_tokens.load_secret({frame_tokens.SECRET_ENV: value} if value else {})


def test_new_secrets_load_and_differ() -> None:
    first, second = frame_tokens.new_secret(), frame_tokens.new_secret()
    assert first != second
    assert len(frame_tokens.load_secret({frame_tokens.SECRET_ENV: first})) == frame_tokens.SECRET_BYTES
