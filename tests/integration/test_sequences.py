"""Sequence integrity on the real server (issue 16, items 10-12): string camera ids, frame order, capacity.

- String ids: ``"cam-0001"`` and ``"cam-0002"`` (and ``7`` and ``"7"``) are separate cameras, each with
  exactly the tracks it gets alone; bad ids are refused with a clear error.
- Order: with 4 and 8 frames of one camera in flight (``frame_index`` on each), every frame gets exactly
  the tracks a one-in-flight run gives, or reason out_of_order; a frame refused upstream delays the frames
  after it by at most ``reorder_wait_s``.
- Capacity: cameras that START and vanish hold the tracker's ``max_cameras`` places only for the idle
  window; a camera beyond is refused (reason capacity) at once, and admitted once there is room.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import (
    OUTPUT_NAMES,
    CameraStream,
    image_input,
    run_camera,
    tracks_from_arrays,
)
from pipeline_config.render import render
from pipeline_models.errors import Reason, reason_of
from pipeline_models.types import Tracks
from pipeline_server.server import TritonServer
from pipeline_tools.local_pipeline import LocalPipeline
from tests.integration.conftest import ServerFactory
from tests.integration.test_reliability import Health
from tests.unit.sample_data import data_path

FRAMES = 40
BOX_ATOL = 1e-3


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    frames = video_jpegs(data_path("vtest.avi"), FRAMES)
    assert len(frames) == FRAMES
    return frames


@pytest.fixture(scope="module")
def alone(local: LocalPipeline, jpegs: list[bytes]) -> list[Tracks]:
    """One camera's tracks over ``jpegs``, in-process, one frame at a time."""
    return [local.track("alone", data, start=i == 0) for i, data in enumerate(jpegs)]


def same_tracks(got: Tracks, want: Tracks) -> bool:
    return (
        np.array_equal(got.ids, want.ids)
        and got.tlwh.shape == want.tlwh.shape
        and np.allclose(got.tlwh, want.tlwh, atol=BOX_ATOL)
    )


def run_concurrently(url: str, streams: dict[int | str, list[bytes]]) -> dict[int | str, list]:
    results: dict[int | str, list] = {}

    def one(camera: int | str) -> None:
        with grpcclient.InferenceServerClient(url) as c:
            results[camera] = run_camera(c, camera, streams[camera])

    threads = [threading.Thread(target=one, args=(camera,)) for camera in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_string_cameras_with_a_common_prefix_keep_their_own_tracks(triton_server, jpegs, alone, local):
    """Cameras that differ after the 8th byte, and 7 beside "7": each gets exactly its tracks alone."""
    half = FRAMES // 2
    streams: dict[int | str, list[bytes]] = {
        "cam-0001": jpegs[:half],
        "cam-0002": jpegs[half:],
        7: jpegs[:half],
        "7": jpegs[half:],
    }
    results = run_concurrently(triton_server.grpc_url, streams)
    want = {
        "first": alone[:half],
        "second": [local.track("second", data, start=i == 0) for i, data in enumerate(jpegs[half:])],
    }
    for camera, got in results.items():
        reference = want["first" if camera in ("cam-0001", 7) else "second"]
        assert [r.error for r in got] == [None] * half, camera
        differ = [r.index for r, w in zip(got, reference) if not same_tracks(r.tracks, w)]
        assert differ == [], f"camera {camera!r}: frames {differ} differ from the camera alone"


def raw_infer(client, camera, jpeg: bytes, start=True, end=True, parameters=None) -> str | None:
    try:
        client.infer("pipeline", [image_input(jpeg)], sequence_id=camera, sequence_start=start,
                     sequence_end=end, parameters=parameters)
    except InferenceServerException as error:
        return error.message()
    return None


@pytest.mark.parametrize(
    "camera,says",
    [
        ("a\nb", "[bad_request] sequence_id 'a\\\\nb' has control characters"),
        ("tab\there", "has control characters"),
        ("\u202egate", "has control characters"),
        ("x" * 129, "string correlation ID cannot be longer than 128 characters"),  # Triton's own check
        ("é" * 65, "cannot be longer than 128 characters"),  # bytes, not characters
        ("", "non-zero or non-empty correlation ID"),  # Triton's own check
    ],
    ids=["newline", "tab", "bidi-override", "129-bytes", "130-bytes-65-chars", "empty"],
)
def test_bad_camera_id_is_refused_clearly(triton_server, client, jpegs, camera, says):
    health = Health(triton_server)
    message = raw_infer(client, camera, jpegs[0])
    assert message is not None and says in message, message
    assert "\n" not in message.split("]", 1)[-1]  # the id is never echoed raw
    assert raw_infer(client, "x" * 128, jpegs[0]) is None  # the longest valid id works
    health.check(client)


def test_non_utf8_camera_id_over_http_is_refused_and_the_stubs_survive(triton_server, client, jpegs):
    """A JSON request can carry a string id that is not UTF-8: it must fail alone, not the whole batch."""
    health = Health(triton_server)
    body = json.dumps(
        {"parameters": {"sequence_id": "@ID@", "sequence_start": True, "sequence_end": True},
         "inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}
    ).encode().replace(b"@ID@", b"\xff\xfecam")
    request = urllib.request.Request(
        f"http://{triton_server.http_url}/v2/models/pipeline/infer", data=body,
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    message = json.loads(info.value.read())["error"]
    assert info.value.code == 400 and "[bad_request] sequence_id is not valid UTF-8" in message, message
    assert run_camera(client, "after-bad-id", jpegs[:2])[1].error is None
    health.check(client)


def in_flight_run(url: str, camera: str, jpegs: list[bytes], in_flight: int) -> dict[int, object]:
    """Sends frame 0 (START) alone, then frames 1.. with ``in_flight`` requests outstanding, each with
    its ``frame_index``; returns index -> Tracks or the error message."""
    outcome: dict[int, object] = {}
    done = threading.Condition()
    with grpcclient.InferenceServerClient(url) as c:
        first = c.infer("pipeline", [image_input(jpegs[0])], sequence_id=camera, sequence_start=True,
                        parameters={"frame_index": 0})
        outcome[0] = tracks_from_arrays(*(first.as_numpy(n) for n in OUTPUT_NAMES))
        slots = threading.Semaphore(in_flight)

        def answered(index: int, result, error) -> None:
            with done:
                outcome[index] = error.message() if error else tracks_from_arrays(
                    *(result.as_numpy(n) for n in OUTPUT_NAMES))
                done.notify_all()
            slots.release()

        for index in range(1, len(jpegs)):
            slots.acquire()
            c.async_infer("pipeline", [image_input(jpegs[index])],
                          callback=lambda result, error, i=index: answered(i, result, error),
                          sequence_id=camera, parameters={"frame_index": index},
                          outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUT_NAMES])
        with done:
            assert done.wait_for(lambda: len(outcome) == len(jpegs), timeout=120)
        c.infer("pipeline", [image_input(jpegs[0])], sequence_id=camera, sequence_end=True,
                parameters={"frame_index": len(jpegs)})
    return outcome


@pytest.mark.parametrize("in_flight", [4, 8])
def test_frames_in_flight_get_exactly_the_one_in_flight_tracks(triton_server, jpegs, alone, in_flight):
    """Every frame gets exactly the tracks a one-in-flight run gives, or reason out_of_order."""
    outcome = in_flight_run(triton_server.grpc_url, f"flight-{in_flight}", jpegs, in_flight)
    refused = {i: r for i, r in outcome.items() if not isinstance(r, Tracks)}
    assert all(reason_of(m) is Reason.OUT_OF_ORDER for m in refused.values()), refused
    differ = [i for i, r in outcome.items() if isinstance(r, Tracks) and not same_tracks(r, alone[i])]
    assert differ == [], f"frames {differ} differ from the one-in-flight run ({len(refused)} refused)"
    held = triton_server.log_text().count("without a frame that never came")
    print(f"{in_flight} in flight: {len(refused)} of {FRAMES} refused, 0 differ; held-frame timeouts {held}")


def test_frames_sent_out_of_order_are_tracked_in_index_order(triton_server, jpegs, alone):
    """Deterministic reordering: each pair goes later frame first (0, 2, 1, 4, 3, ...), 50 ms apart, all
    in flight together; the tracker holds each early frame for its predecessor: every frame gets exactly
    the tracks of the one-in-flight run."""
    order = [0] + [i for k in range(1, FRAMES - 1, 2) for i in (k + 1, k)]
    order += [FRAMES - 1] if FRAMES % 2 == 0 else []
    assert sorted(order) == list(range(FRAMES))
    outcome: dict[int, object] = {}
    done = threading.Condition()

    def answered(index: int, result, error) -> None:
        with done:
            outcome[index] = error.message() if error else tracks_from_arrays(
                *(result.as_numpy(n) for n in OUTPUT_NAMES))
            done.notify_all()

    with grpcclient.InferenceServerClient(triton_server.grpc_url) as c:
        for n, index in enumerate(order):
            c.async_infer("pipeline", [image_input(jpegs[index])], sequence_id="swapped",
                          sequence_start=n == 0, callback=lambda result, error, i=index: answered(i, result, error),
                          parameters={"frame_index": index},
                          outputs=[grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES])
            if n == 0:
                with done:
                    assert done.wait_for(lambda: 0 in outcome, timeout=30)  # START alone, first
            time.sleep(0.05)
        with done:
            assert done.wait_for(lambda: len(outcome) == FRAMES, timeout=120)
        c.infer("pipeline", [image_input(jpegs[0])], sequence_id="swapped", sequence_end=True,
                parameters={"frame_index": FRAMES})  # leaves no live camera to other tests
    errors = {i: r for i, r in outcome.items() if not isinstance(r, Tracks)}
    assert errors == {}
    assert [i for i in range(FRAMES) if not same_tracks(outcome[i], alone[i])] == []


def test_a_frame_refused_upstream_delays_its_successors_only_by_the_wait(triton_server, jpegs, local):
    """Frame 10 is refused by preprocess: with 4 in flight the frames after it wait for it at the tracker
    for at most reorder_wait_s, then are tracked as a one-in-flight run that skips frame 10 would be (its
    tracker steps 2 frames from frame 9 to frame 11)."""
    frames = [*jpegs[:10], b"junk", *jpegs[11:]]
    began = time.monotonic()
    outcome = in_flight_run(triton_server.grpc_url, "lost-10", frames, 4)
    took = time.monotonic() - began
    assert isinstance(outcome[10], str) and reason_of(outcome[10]) is Reason.NOT_IMAGE
    kept = [i for i in range(FRAMES) if i != 10]
    want = {i: local.track("without-10", jpegs[i], start=n == 0, steps=2 if i == 11 else 1)
            for n, i in enumerate(kept)}
    differ = [i for i in kept if not (isinstance(outcome[i], Tracks) and same_tracks(outcome[i], want[i]))]
    assert differ == [], {i: outcome[i] for i in differ if not isinstance(outcome[i], Tracks)}
    assert took < 20, took  # the whole run, one wait of reorder_wait_s (1 s) included
    print(f"40 frames, 4 in flight, frame 10 corrupt: {took:.2f} s")
    assert "cameras ['lost-10'] without a frame that never came" in triton_server.log_text()


def test_one_in_flight_with_frame_index_is_the_one_camera_run(client, jpegs, alone):
    results = run_camera(client, "indexed", jpegs)
    assert [r.error for r in results] == [None] * FRAMES
    assert [i for i, (r, w) in enumerate(zip(results, alone)) if not same_tracks(r.tracks, w)] == []


# Capacity: a small server (4 cameras, 2 s idle window).
MAX_CAMERAS = 4
IDLE_S = 2.0


@pytest.fixture(scope="module")
def small_server(triton_factory: ServerFactory, tmp_path_factory) -> TritonServer:
    repo = render(
        "cpu", tmp_path_factory.mktemp("capacity") / "repo",
        {"max_cameras": str(MAX_CAMERAS), "idle_timeout_s": str(IDLE_S)},
    )
    return triton_factory(repo)


def timed_start(client, camera, jpeg: bytes) -> tuple[str | None, float]:
    began = time.monotonic()
    message = raw_infer(client, camera, jpeg, start=True, end=False)
    return message, time.monotonic() - began


def test_vanished_cameras_free_their_places_and_a_camera_beyond_is_refused_at_once(small_server, jpegs):
    health = Health(small_server)
    with grpcclient.InferenceServerClient(small_server.grpc_url) as c:
        for k in range(MAX_CAMERAS):  # START, then vanish (no END)
            assert timed_start(c, f"vanish-{k}", jpegs[0])[0] is None
        vanished = time.monotonic()
        message, took = timed_start(c, "fifth", jpegs[1])
        assert message is not None
        assert f"[capacity] camera fifth: server full: {MAX_CAMERAS} cameras" in message
        assert took < 3.0, took
        print(f"capacity refusal after {took:.3f} s")
        message, took = timed_start(c, "fifth", jpegs[1])  # the refused camera retries: still full
        assert reason_of(message) is Reason.CAPACITY and took < 3.0
        stream = CameraStream(c, "fifth")  # the client's rule: the next frame goes with START again
        with pytest.raises(InferenceServerException, match=r"\[capacity\]"):
            stream.send(jpegs[2])
        time.sleep(max(0.0, vanished + IDLE_S + 0.5 - time.monotonic()))
        tracks, restarted = stream.send(jpegs[3])  # the idle window passed: the retry is admitted
        assert not restarted and len(tracks.ids) > 0 and tracks.ids.min() == 1
        for k in range(MAX_CAMERAS - 1):  # and new cameras too, up to the limit again
            assert timed_start(c, f"new-{k}", jpegs[0])[0] is None
        assert reason_of(timed_start(c, "one-too-many", jpegs[0])[0]) is Reason.CAPACITY
        assert "idle cameras" in small_server.log_text() and "vanish-0" in small_server.log_text()
        health.check(c)


def test_two_tracker_instances_each_admit_max_cameras(triton_factory: ServerFactory, tmp_path_factory, jpegs):
    """Triton gives a new sequence the lowest free slot of any instance, so the instances fill evenly:
    2 instances x 2 places admit 4 cameras, the 5th is refused."""
    repo = render(
        "cpu", tmp_path_factory.mktemp("capacity2") / "repo",
        {"max_cameras": "2", "idle_timeout_s": str(IDLE_S), "tracker_instances": "2"},
    )
    server = triton_factory(repo)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        assert [timed_start(c, f"two-{k}", jpegs[0])[0] for k in range(4)] == [None] * 4
        assert reason_of(timed_start(c, "two-4", jpegs[0])[0]) is Reason.CAPACITY
        for k in range(4):
            assert raw_infer(c, f"two-{k}", jpegs[1], start=False, end=True) is None  # all still tracked
