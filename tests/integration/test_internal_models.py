"""Internal models refuse what did not come through the ensemble (issue 16, item 3), on the real server.

A client that reaches Triton can call every composing model by name, and Triton forwards the sequence
flags and parameters of a request to every step, so only the frame tokens (pipeline_models/frame_tokens.py)
tell a step's input from a forgery. Here a camera tracks through ``pipeline`` while "an attacker" calls
``tracker`` and ``postprocess`` directly with the same camera id: every forged call is refused with
reason ``forbidden`` before any state changes, and the camera's tracks stay exactly those of a clean run.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import CameraStream, run_camera
from pipeline_models.errors import Reason, reason_of
from tests.unit.sample_data import vtest_frame

N_FRAMES = 6


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return [cv2.imencode(".jpg", vtest_frame(i))[1].tobytes() for i in range(N_FRAMES)]


def tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
    item = grpcclient.InferInput(name, list(array.shape), dtype)
    item.set_data_from_numpy(array)
    return item


def call(client, model: str, inputs: list[grpcclient.InferInput], camera: int, start: bool = False) -> str:
    """A direct call that must fail; returns its message."""
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs, sequence_id=camera, sequence_start=start)
    return caught.value.message()


def forged_tracker_inputs(n_boxes: int, token: np.ndarray) -> list[grpcclient.InferInput]:
    boxes = np.tile(np.float32([[0, 0, 500, 500]]), (1, n_boxes, 1))
    return [
        tensor("DET_BOXES", boxes, "FP32"),
        tensor("DET_SCORES", np.full((1, n_boxes), 0.99, np.float32), "FP32"),
        tensor("TOKEN", token.reshape(1, -1).astype(np.uint8), "UINT8"),
    ]


def test_forged_calls_to_internal_models_change_nothing(client, frames):
    reference = run_camera(client, 7100, frames)
    assert all(r.error is None for r in reference) and sum(len(r.tracks.ids) for r in reference) > 0

    stream = CameraStream(client, 7101)
    half = N_FRAMES // 2
    got = [stream.send(frame)[0] for frame in frames[:half]]
    attacks = {
        # a START that would wipe the camera, with fake tracks, under a made-up token
        "tracker-start": call(client, "tracker", forged_tracker_inputs(3, np.zeros(16)), 7101, start=True),
        # 10 000 boxes (quadratic association) go no further than the token check
        "tracker-flood": call(client, "tracker", forged_tracker_inputs(10_000, np.arange(16)), 7101),
        # postprocess would sign anything, if it took a made-up preprocess token
        "postprocess": call(
            client,
            "postprocess",
            [
                tensor("RAW", np.zeros((1, 100, 6), np.float32), "FP32"),
                tensor("META", np.float32([[576, 768, 1.0]]), "FP32"),
                tensor("TOKEN", np.zeros((1, 16), np.uint8), "UINT8"),
            ],
            7101,
        ),
    }
    for name, message in attacks.items():
        assert reason_of(message) is Reason.FORBIDDEN, (name, message)
        assert "camera 7101" in message, (name, message)
    got += [stream.send(frame, last=i == len(frames) - 1)[0] for i, frame in enumerate(frames[half:], half)]
    for mine, clean in zip(got, reference):
        np.testing.assert_array_equal(mine.ids, clean.tracks.ids)
        np.testing.assert_allclose(mine.tlwh, clean.tracks.tlwh, atol=1e-3)


def test_a_call_without_a_token_is_refused_by_triton(client):
    boxes = tensor("DET_BOXES", np.zeros((1, 1, 4), np.float32), "FP32")
    scores = tensor("DET_SCORES", np.ones((1, 1), np.float32), "FP32")
    message = call(client, "tracker", [boxes, scores], 7102, start=True)
    assert "TOKEN" in message


def test_a_token_from_preprocess_binds_its_camera(client, frames):
    """Calling preprocess directly yields a token for that camera only: postprocess refuses it for another."""
    image = tensor("IMAGE", np.array([[frames[0]]], np.object_), "BYTES")
    pre = client.infer("preprocess", [image], sequence_id=7103, sequence_start=True)
    raw = client.infer("detector", [tensor("images", pre.as_numpy("IMAGES"), "UINT8")])
    inputs = [
        tensor("RAW", raw.as_numpy("output"), "FP32"),
        tensor("META", pre.as_numpy("META"), "FP32"),
        tensor("TOKEN", pre.as_numpy("TOKEN"), "UINT8"),
    ]
    signed = client.infer("postprocess", inputs, sequence_id=7103, sequence_start=True)  # the same camera
    assert signed.as_numpy("TOKEN").shape == (1, 16)
    assert reason_of(call(client, "postprocess", inputs, 7104, start=True)) is Reason.FORBIDDEN
