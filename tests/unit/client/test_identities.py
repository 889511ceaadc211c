"""Global ids and names (ReID on the server) through the client, against ``FakeTriton`` with and without them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from pipeline_client.annotate import label_name
from pipeline_client.jsonl import frame_line, frame_record
from pipeline_client.triton_client import (
    IDENTITY_OUTPUTS,
    OUTPUT_NAMES,
    CameraStream,
    MalformedAnswerError,
    ServerUnavailableError,
    check_ready,
    decode_name,
    identity_outputs,
    names_from_array,
    run_camera,
)
from pipeline_models.types import Tracks
from tests.unit.client.fake_triton import FakeTriton
from tests.unit.client.test_triton_client import FakeClock


def one_track() -> Tracks:
    return Tracks(np.array([3]), np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0.5], np.float32))


def test_without_reid_the_identity_outputs_are_not_requested_and_stay_none() -> None:
    server = FakeTriton()
    results = run_camera(server, 7, [b"a", b"b", b"c"])
    assert [r.error for r in results] == [None] * 3
    assert all(r.global_ids is None and r.names is None for r in results)
    assert server.requested == [OUTPUT_NAMES] * 3
    assert server.metadata_calls == 1, "the metadata is read once per stream"


def test_with_reid_every_frame_carries_global_ids_and_names() -> None:
    server = FakeTriton(reid=True)
    results = run_camera(server, 7, [b"a", b"b", b"c"])
    assert [r.error for r in results] == [None] * 3
    assert [r.global_ids.tolist() for r in results] == [[101], [102], [103]]
    assert all(r.global_ids.dtype == np.int64 for r in results)
    assert [r.names for r in results] == [("Alice",)] * 3
    assert server.requested == [(*OUTPUT_NAMES, *IDENTITY_OUTPUTS)] * 3
    assert server.metadata_calls == 1


def test_outputs_read_once_by_the_caller_are_not_asked_again() -> None:
    server = FakeTriton(reid=True)
    stream = CameraStream(server, 3, identity_outputs=("GLOBAL_IDS", "NAMES"))
    assert stream.answer(b"a").global_ids.tolist() == [101]
    assert server.metadata_calls == 0


def test_requesting_an_output_the_model_lacks_is_an_error() -> None:
    # Why the client asks first: Triton refuses a request for an output the model does not have.
    stream = CameraStream(FakeTriton(), 3, identity_outputs=IDENTITY_OUTPUTS)
    with pytest.raises(InferenceServerException, match="unexpected inference output 'GLOBAL_IDS'"):
        stream.send(b"a")


def test_identity_outputs_of_metadata() -> None:
    base = [{"name": n} for n in OUTPUT_NAMES]
    assert identity_outputs({"outputs": base}) == ()
    assert identity_outputs({"outputs": [*base, {"name": "NAMES"}, {"name": "GLOBAL_IDS"}]}) == IDENTITY_OUTPUTS
    assert identity_outputs({"outputs": [*base, {"name": "GLOBAL_IDS"}]}) == ("GLOBAL_IDS",)
    assert identity_outputs({}) == ()


class ReadyFake(FakeTriton):
    def is_server_ready(self, headers=None, client_timeout=None) -> bool:
        return True

    def is_model_ready(self, model_name, headers=None, client_timeout=None) -> bool:
        return True


@pytest.mark.parametrize("reid,expected", [(False, ()), (True, IDENTITY_OUTPUTS)])
def test_check_ready_says_which_identity_outputs_the_model_has(reid, expected) -> None:
    server = ReadyFake(reid=reid)
    assert check_ready(server, "pipeline") == expected and server.metadata_calls == 1


def test_names_decode_utf8_and_show_other_bytes_safely() -> None:
    assert decode_name("Zoë".encode()) == "Zoë"
    assert decode_name(b"Jos\xe9\xff") == "Jos\\xe9\\xff", "not UTF-8: escaped, never an exception"
    assert decode_name(np.bytes_(b"Bob")) == "Bob" and decode_name("str") == "str"
    assert names_from_array(np.array([[b"", b"Ann"]], dtype=object), 2) == ("", "Ann")
    # In the video: printable ASCII only; in JSON: valid UTF-8 text.
    assert label_name("Zoë\n\x1b") == "Zo???" and label_name(decode_name(b"\xff")) == "\\xff"
    line = frame_line(frame_record(0, 0.0, one_track(), np.array([5]), (decode_name(b"A\xffB"),)))
    assert json.loads(line)["tracks"][0]["name"] == "A\\xffB"


def test_non_utf8_names_come_through_the_stream() -> None:
    server = FakeTriton(reid=True, name=b"\xc3\x28caf\xe9")
    (result,) = run_camera(server, 2, [b"a"])
    assert result.error is None and result.names == ("\\xc3(caf\\xe9",)


@pytest.mark.parametrize(
    "bad,match",
    [
        ((np.array([[1, 2]], np.int64), np.array([[b"a"]], object)), "1 TRACK_IDS but 2 GLOBAL_IDS"),
        ((np.zeros((1, 0), np.int64), np.array([[b"a"]], object)), "1 TRACK_IDS but 0 GLOBAL_IDS"),
        ((np.array([[1]], np.int64), np.array([[b"a", b"b"]], object)), "1 TRACK_IDS but 2 NAMES"),
        ((np.array([[1.5]], np.float32), np.array([[b"a"]], object)), "GLOBAL_IDS"),
        ((None, np.array([[b"a"]], object)), "no GLOBAL_IDS output"),
    ],
)
def test_misaligned_identities_are_a_per_frame_error_and_the_camera_goes_on(bad, match) -> None:
    server = FakeTriton(reid=True, identities={2: lambda: bad})
    results = run_camera(server, 4, [b"a", b"b", b"c", b"d"])
    assert [r.error is None for r in results] == [True, False, True, True]
    assert "camera 4" in results[1].error and "malformed answer" in results[1].error
    assert match in results[1].error
    assert len(results[1].tracks) == 0 and results[1].global_ids is None and results[1].names is None
    assert [r.global_ids.tolist() for r in results if r.error is None] == [[101], [103], [104]]
    # The server tracked that frame: the next one takes the next index and no new START is sent.
    assert server.frame_indices == [0, 1, 2, 3]
    assert [start for _, start, _, _ in server.calls] == [True, False, False, False]


def test_stream_send_raises_on_a_misaligned_answer() -> None:
    server = FakeTriton(reid=True, identities={1: lambda: (np.array([[1, 2]]), np.array([[b"a"]], object))})
    with pytest.raises(MalformedAnswerError, match="GLOBAL_IDS"):
        CameraStream(server, 4).send(b"a")


def test_metadata_of_a_server_that_is_down_is_retried_with_reconnect() -> None:
    server = FakeTriton(reid=True, down=True)
    clock = FakeClock(at=0.5, then=lambda: setattr(server, "down", False))
    stream = CameraStream(server, 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    answer = stream.answer(b"f1")
    assert answer.global_ids.tolist() == [101] and stream.reconnects >= 1
    assert server.frame_indices == [0], "no frame index spent on the metadata"


def test_a_refused_metadata_call_is_not_retried() -> None:
    class Refusing(FakeTriton):
        def get_model_metadata(self, *args, **kwargs):
            raise InferenceServerException("denied", status="StatusCode.PERMISSION_DENIED")

    clock = FakeClock()
    stream = CameraStream(Refusing(), 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    with pytest.raises(ServerUnavailableError, match="metadata of 'pipeline': denied"):
        stream.send(b"f1")
    assert clock.waits == [] and stream.client.calls == []

