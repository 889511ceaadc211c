"""The camera stream's request flags, output parsing and restart rule (against ``FakeTriton``)."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import (
    CameraStream,
    ServerUnavailableError,
    image_input,
    is_outage_error,
    is_restart_error,
    run_camera,
    tracks_from_arrays,
)
from tests.unit.client.fake_triton import INVALID_ARG, FakeTriton


def test_tracks_from_arrays_with_batch_dim() -> None:
    tracks = tracks_from_arrays(
        np.array([[4, 9]]), np.array([[[10, 20, 40, 80], [0, 0, 1, 2]]], np.float32), np.array([[0.5, 0.7]])
    )
    np.testing.assert_array_equal(tracks.ids, [4, 9])
    np.testing.assert_allclose(tracks.tlwh, [[10, 20, 30, 60], [0, 0, 1, 2]])
    np.testing.assert_allclose(tracks.xyxy, [[10, 20, 40, 80], [0, 0, 1, 2]])
    assert tracks.ids.dtype == np.int64 and tracks.tlwh.dtype == np.float64


def test_tracks_from_empty_outputs() -> None:
    tracks = tracks_from_arrays(np.zeros((1, 0)), np.zeros((1, 0, 4)), np.zeros((1, 0)))
    assert len(tracks) == 0 and tracks.tlwh.shape == (0, 4)


def test_tracks_from_disagreeing_outputs() -> None:
    with pytest.raises(ValueError, match="disagree"):
        tracks_from_arrays(np.zeros((1, 2)), np.zeros((1, 1, 4)), np.zeros((1, 2)))


def test_image_input_is_one_bytes_element() -> None:
    tensor = image_input(b"\xff\xd8jpeg")
    assert tensor.datatype() == "BYTES" and list(tensor.shape()) == [1, 1]


@pytest.mark.parametrize(
    ("message", "status", "expected"),
    [
        ("[no_sequence] camera 3: no tracker state; start a new sequence", INVALID_ARG, True),
        ("camera 3: no tracker state; start a new sequence", INVALID_ARG, False),  # no reason token
        ("[corrupt] camera 3: start a new sequence", INVALID_ARG, False),  # the reason decides, not the text
        (
            "inference request for sequence 3 to model 'tracker' must specify the START flag",
            INVALID_ARG,
            True,
        ),
        ("failed to decode the image", INVALID_ARG, False),
        ("[no_sequence] camera 3: start a new sequence", "StatusCode.INTERNAL", False),
    ],
)
def test_is_restart_error(message: str, status: str, expected: bool) -> None:
    assert is_restart_error(InferenceServerException(message, status=status)) is expected


def test_flags_start_first_end_last() -> None:
    server = FakeTriton()
    results = run_camera(server, 7, [b"a", b"b", b"c"])
    assert [(c[0], c[1], c[2]) for c in server.calls] == [
        (7, True, False),
        (7, False, False),
        (7, False, True),
    ]
    assert [c[3] for c in server.calls] == [b"a", b"b", b"c"]
    assert [r.index for r in results] == [0, 1, 2]
    assert [float(r.tracks.tlwh[0, 0]) for r in results] == [1.0, 2.0, 3.0]
    assert server.live == {}, "END freed the sequence"


def test_single_frame_is_start_and_end() -> None:
    server = FakeTriton()
    run_camera(server, 1, [b"only"])
    assert [(c[1], c[2]) for c in server.calls] == [(True, True)]


def test_decoded_frames_are_sent_as_jpeg() -> None:
    server = FakeTriton()
    run_camera(server, 1, [np.zeros((16, 16, 3), np.uint8)])
    assert server.calls[0][3][:2] == b"\xff\xd8"


def test_reclaimed_sequence_is_restarted_with_the_same_frame() -> None:
    server = FakeTriton()
    stream = CameraStream(server, 3)
    stream.send(b"f1")
    stream.send(b"f2")
    del server.live[3]  # the server reclaimed the idle sequence
    tracks, restarted = stream.send(b"f3")
    assert restarted and stream.restarts == 1
    assert [(c[1], c[3]) for c in server.calls[-2:]] == [(False, b"f3"), (True, b"f3")]
    assert float(tracks.tlwh[0, 0]) == 1.0, "the new sequence starts from scratch"
    _, restarted = stream.send(b"f4")
    assert not restarted and server.calls[-1][1] is False


def test_failed_frame_is_reported_and_the_camera_goes_on() -> None:
    server = FakeTriton(fail_payloads={b"bad"})
    results = run_camera(server, 2, [b"ok1", b"bad", b"ok2"])
    assert [r.error is None for r in results] == [True, False, True]
    assert "decode" in results[1].error and len(results[1].tracks) == 0
    assert float(results[2].tracks.tlwh[0, 0]) == 2.0, "the sequence carried on after the bad frame"
    assert all(r.latency_s >= 0 for r in results)


def test_failed_first_frame_then_restart() -> None:
    # A START the server rejected before the tracker saw it: the next frame restarts the sequence.
    server = FakeTriton(fail_payloads={b"bad"})
    stream = CameraStream(server, 4)
    with pytest.raises(InferenceServerException):
        stream.send(b"bad")
    del server.live[4]
    _, restarted = stream.send(b"good")
    assert restarted


def test_after_end_the_next_frame_starts_again() -> None:
    server = FakeTriton()
    stream = CameraStream(server, 5)
    stream.send(b"a", last=True)
    stream.send(b"b")
    assert [c[1] for c in server.calls] == [True, True]


def test_unreachable_server_raises() -> None:
    with pytest.raises(ServerUnavailableError):
        run_camera(FakeTriton(down=True), 1, [b"a"])


@pytest.mark.parametrize("bad", [0, -3, "", "a\nb", "x" * 129, 1.5])
def test_camera_id_must_be_valid(bad) -> None:
    with pytest.raises(ValueError):
        CameraStream(FakeTriton(), bad)


def test_string_camera_sends_its_id_and_a_frame_index_per_frame() -> None:
    server = FakeTriton()
    results = run_camera(server, "gate-3", [b"a", b"b", b"c"])
    assert [r.error for r in results] == [None, None, None]
    assert [call[0] for call in server.calls] == ["gate-3"] * 3
    assert server.frame_indices == [0, 1, 2]


def test_a_refused_frame_gives_its_index_to_the_next_one() -> None:
    server = FakeTriton(fail_payloads={b"bad"})
    results = run_camera(server, 3, [b"a", b"bad", b"c", b"d"])
    assert [r.error is None for r in results] == [True, False, True, True]
    assert server.frame_indices == [0, 1, 1, 2]


def test_capacity_refusal_is_reported_and_the_next_frame_starts_again() -> None:
    server = FakeTriton(full_for={5: 1})
    results = run_camera(server, 5, [b"a", b"b", b"c"])
    assert "[capacity]" in results[0].error and results[1].error is None and not results[1].restarted
    flags = [(start, end) for _, start, end, _ in server.calls]
    assert flags == [(True, False), (True, False), (False, True)]


def test_parse_headers_lowercases_names_and_rejects_bad_pairs() -> None:
    from pipeline_client.triton_client import parse_headers

    assert parse_headers(["Triton-GRPC-Protocol-X-Api-Key=a=b"]) == {"triton-grpc-protocol-x-api-key": "a=b"}
    with pytest.raises(ValueError):
        parse_headers(["novalue"])


class FakeClock:
    """Monotonic time that only moves when slept; ``at`` runs a callback once the time reaches it."""

    def __init__(self, at: float = float("inf"), then=lambda: None) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.at = at
        self.then = then

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.now >= self.at:
            self.then()
            self.at = float("inf")


def test_backoff_doubles_up_to_the_cap() -> None:
    from itertools import islice

    from pipeline_client.triton_client import backoff_waits

    assert list(islice(backoff_waits(0.1, 1.0), 6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def restarted_server(server: FakeTriton) -> None:
    """What a server restart looks like to the client: reachable again, every sequence forgotten."""
    server.down = False
    server.live.clear()


def test_reconnect_after_restart_starts_a_new_sequence_with_the_same_frame() -> None:
    server = FakeTriton()
    clock = FakeClock(at=3.0, then=lambda: restarted_server(server))
    stream = CameraStream(server, 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    stream.send(b"f1")
    stream.send(b"f2")
    server.down = True
    tracks, restarted = stream.send(b"f3")
    assert restarted and stream.restarts == 1 and stream.reconnects == len(clock.waits) > 1
    assert clock.waits[:3] == [0.1, 0.2, 0.4] and clock.now >= 3.0
    # The resent frame met the unknown sequence, then went again with START: IDs restart.
    assert [(c[1], c[3]) for c in server.calls[-2:]] == [(False, b"f3"), (True, b"f3")]
    assert float(tracks.tlwh[0, 0]) == 1.0, "the new sequence starts from scratch"
    tracks, restarted = stream.send(b"f4", last=True)
    assert not restarted and float(tracks.tlwh[0, 0]) == 2.0
    assert [c[3] for c in server.calls] == [b"f1", b"f2", b"f3", b"f3", b"f4"], "in order, none lost"


def test_reconnect_to_the_same_server_keeps_the_sequence() -> None:
    server = FakeTriton()
    clock = FakeClock(at=0.5, then=lambda: setattr(server, "down", False))
    stream = CameraStream(server, 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    stream.send(b"f1")
    server.down = True
    tracks, restarted = stream.send(b"f2")
    assert not restarted and stream.restarts == 0 and float(tracks.tlwh[0, 0]) == 2.0


def test_reconnect_gives_up_at_the_deadline() -> None:
    server = FakeTriton(down=True)
    clock = FakeClock()
    stream = CameraStream(server, 6, reconnect_s=5.0, sleep=clock.sleep, clock=clock.monotonic)
    with pytest.raises(ServerUnavailableError):
        stream.send(b"f1")
    assert sum(clock.waits) == pytest.approx(5.0) and max(clock.waits) <= 2.0


def test_no_reconnect_by_default() -> None:
    clock = FakeClock()
    stream = CameraStream(FakeTriton(down=True), 6, sleep=clock.sleep, clock=clock.monotonic)
    with pytest.raises(ServerUnavailableError):
        stream.send(b"f1")
    assert clock.waits == [] and stream.reconnects == 0


def test_negative_reconnect_is_refused() -> None:
    with pytest.raises(ValueError):
        CameraStream(FakeTriton(), 1, reconnect_s=-1)


def test_a_refused_key_is_not_retried() -> None:
    class KeyedServer(FakeTriton):
        def infer(self, *args, **kwargs):
            raise InferenceServerException(
                "This protocol is restricted, expecting header 'triton-grpc-protocol-x-api-key'",
                status="StatusCode.UNAVAILABLE",
            )

    clock = FakeClock()
    stream = CameraStream(KeyedServer(), 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    with pytest.raises(ServerUnavailableError, match="restricted"):
        stream.send(b"f1")
    assert clock.waits == []


@pytest.mark.parametrize(
    ("message", "status", "expected"),
    [
        ("in ensemble 'pipeline', Stub process 'detector_0_0' is not healthy.", "StatusCode.INTERNAL", True),
        ("Request for unknown model: 'pipeline' has no available versions", "StatusCode.NOT_FOUND", True),
        ("Request for unknown model: 'pipeline' is not ready", "StatusCode.UNAVAILABLE", True),
        ("failed to connect to all addresses", "StatusCode.UNAVAILABLE", True),
        ("This protocol is restricted, expecting header 'x'", "StatusCode.UNAVAILABLE", False),
        ("Request for unknown model: 'nope' is not found", "StatusCode.NOT_FOUND", False),
        ("failed to decode the image", INVALID_ARG, False),
        ("image is not healthy", INVALID_ARG, False),  # a bad input is never retried
    ],
)
def test_is_outage_error(message: str, status: str, expected: bool) -> None:
    assert is_outage_error(InferenceServerException(message, status=status)) is expected


class RestartingStep(FakeTriton):
    """A server whose detector stub dies after ``die_after`` calls and is back once the clock says so
    (the watchdog restarted it); the tracker, and so every sequence, is kept."""

    def __init__(self, die_after: int, messages: list[tuple[str, str]]) -> None:
        super().__init__()
        self.die_after, self.messages, self.back = die_after, list(messages), False

    def infer(self, *args, **kwargs):
        if len(self.calls) >= self.die_after and not self.back:
            self.calls.append(
                (kwargs["sequence_id"], kwargs["sequence_start"], kwargs["sequence_end"], b"lost")
            )
            message, status = self.messages[0] if len(self.messages) == 1 else self.messages.pop(0)
            raise InferenceServerException(message, status=status)
        return super().infer(*args, **kwargs)


def test_a_restarting_step_is_waited_for_and_the_sequence_goes_on() -> None:
    server = RestartingStep(
        2,
        [
            ("in ensemble 'pipeline', Stub process 'detector_0_0' is not healthy.", "StatusCode.INTERNAL"),
            ("Request for unknown model: 'pipeline' has no available versions", "StatusCode.NOT_FOUND"),
        ],
    )
    clock = FakeClock(at=1.0, then=lambda: setattr(server, "back", True))
    stream = CameraStream(server, 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    stream.send(b"f1")
    stream.send(b"f2")
    tracks, restarted = stream.send(b"f3")
    assert not restarted and float(tracks.tlwh[0, 0]) == 3.0, "the tracker kept the sequence"
    assert stream.reconnects == len(clock.waits) >= 2 and clock.waits[:2] == [0.1, 0.2], "backoff"


def test_a_restarted_tracker_means_a_new_sequence_after_the_wait() -> None:
    server = RestartingStep(
        2, [("in ensemble 'pipeline', Stub process 'tracker_0_0' is not healthy.", "StatusCode.INTERNAL")]
    )

    def tracker_back() -> None:
        server.back = True
        server.live.clear()  # a new tracker instance knows no sequence

    clock = FakeClock(at=1.0, then=tracker_back)
    stream = CameraStream(server, 6, reconnect_s=10.0, sleep=clock.sleep, clock=clock.monotonic)
    stream.send(b"f1")
    stream.send(b"f2")
    tracks, restarted = stream.send(b"f3")
    assert restarted and stream.restarts == 1 and float(tracks.tlwh[0, 0]) == 1.0


def test_without_reconnect_a_restarting_step_fails_only_the_frame() -> None:
    server = RestartingStep(1, [("Stub process 'detector_0_0' is not healthy.", "StatusCode.INTERNAL")])
    stream = CameraStream(server, 6)
    stream.send(b"f1")
    with pytest.raises(InferenceServerException, match="not healthy"):
        stream.send(b"f2")


def test_the_inference_key_comes_from_a_keys_file_a_key_file_or_the_environment(tmp_path):
    from pipeline_client.triton_client import key_headers, read_key

    keys = tmp_path / "keys"
    keys.write_text("# gateway keys\ninference=abc\nadmin=xyz\n")
    assert read_key(str(keys), {}) == "abc"
    single = tmp_path / "key"
    single.write_text("just-the-key\n")
    assert read_key(str(single), {"PIPELINE_INFERENCE_KEY": "env"}) == "just-the-key"
    assert read_key(None, {"PIPELINE_INFERENCE_KEY": "env"}) == "env"
    assert read_key(None, {}) is None
    admin_only = tmp_path / "admin"
    admin_only.write_text("admin=xyz\n")
    with pytest.raises(ValueError, match="no inference=KEY"):
        read_key(str(admin_only), {})
    assert key_headers("k", {"other": "1"}) == {"other": "1", "x-api-key": "k"}
    assert key_headers("k", {"x-api-key": "given"}) == {"x-api-key": "given"}
    assert key_headers(None, {}) == {}


def test_frames_sent_with_their_own_index_say_the_previous_one_after_a_gap() -> None:
    server = FakeTriton()
    stream = CameraStream(server, 6)
    for index in (3, 4, 7, 8, 12):  # a live source: the frames between were dropped
        stream.answer(b"f%d" % index, index=index)
    assert server.parameters == [
        {"frame_index": 3},  # START: whatever index, no previous
        {"frame_index": 4},  # no gap: the common path is unchanged
        {"frame_index": 7, "previous_frame_index": 4},
        {"frame_index": 8},
        {"frame_index": 12, "previous_frame_index": 8},
    ]
    assert [start for _, start, _, _ in server.calls] == [True, False, False, False, False]


def test_a_restart_after_a_gap_sends_no_previous_with_its_start() -> None:
    server = FakeTriton()
    stream = CameraStream(server, 6, start_parameters={"frame_rate": 5.0})
    stream.answer(b"a", index=0)
    server.live.clear()  # the server reclaimed the sequence while frames were dropped
    assert stream.answer(b"b", index=9).restarted
    stream.answer(b"c", index=11)
    assert server.parameters == [
        {"frame_rate": 5.0, "frame_index": 0},
        {"frame_index": 9, "previous_frame_index": 0},  # refused: unknown sequence
        {"frame_rate": 5.0, "frame_index": 9},  # the new sequence starts at the frame's own index
        {"frame_index": 11, "previous_frame_index": 9},
    ]


def test_a_refused_frame_is_not_named_as_the_previous_one() -> None:
    server = FakeTriton(fail_payloads={b"bad"})
    stream = CameraStream(server, 6)
    stream.answer(b"a", index=0)
    with pytest.raises(InferenceServerException):
        stream.answer(b"bad", index=2)  # refused before tracking: the server never saw frame 2
    stream.answer(b"c", index=3)
    assert server.parameters[1:] == [
        {"frame_index": 2, "previous_frame_index": 0},
        {"frame_index": 3, "previous_frame_index": 0},
    ]


def test_an_index_not_after_the_previous_one_is_refused_before_sending() -> None:
    server = FakeTriton()
    stream = CameraStream(server, 6)
    stream.answer(b"a", index=5)
    for bad in (5, 2):
        with pytest.raises(ValueError, match="not after 5"):
            stream.answer(b"b", index=bad)
    with pytest.raises(ValueError, match="previous_frame_index"):
        CameraStream(server, 7, start_parameters={"previous_frame_index": 1})
    stream.answer(b"c")  # without an index: the next one, no gap
    assert server.frame_indices == [5, 6] and len(server.calls) == 2


@pytest.mark.parametrize(
    ("camera", "value"),
    [(7, "7"), ("7", "7"), ("gate-3", "gate-3"), ("a b,c/é%", "a%20b%2Cc%2F%C3%A9%25")],
)
def test_every_request_carries_the_camera_id_header(camera, value) -> None:
    server = FakeTriton()
    stream = CameraStream(server, camera, headers={"x-api-key": "k", "camera-id": "someone-else"})
    stream.send(b"a")
    stream.send(b"b", last=True)
    base = {"x-api-key": "k", "camera-id": value}
    # the metadata read, the START frame (marked, so a gateway may route a new sequence afresh), the next
    assert server.headers == [base, {**base, "sequence-start": "1"}, base]


def test_a_restart_resends_with_the_camera_id_header() -> None:
    server = FakeTriton()
    stream = CameraStream(server, "gate-3")
    stream.send(b"a")
    server.live.clear()  # the server (or the one the gateway moved the camera to) lost the sequence
    _, restarted = stream.send(b"b")
    assert restarted and [h["camera-id"] for h in server.headers] == ["gate-3"] * 4
    # the first frame and the resent one are STARTs, the refused one in between is not
    assert [h.get("sequence-start") for h in server.headers] == [None, "1", None, "1"]
