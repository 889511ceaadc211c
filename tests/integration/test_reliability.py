"""Bad input, isolation and lifecycle against the real server (issue 7, items 1-3).

Every bad request must fail alone with an error naming the camera and the problem, while the same
camera and the other cameras go on with exactly the tracks they would have had without it; no python
stub may crash or restart (their pids are checked) and every model stays ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import CameraStream, run_camera
from pipeline_config.render import render
from pipeline_server.procstat import rss_bytes, stub_processes
from pipeline_server.server import TritonServer
from tests.image_samples import flat_cmyk_jpeg
from tests.integration.conftest import ServerFactory
from tests.unit.sample_data import vtest_frame

MODELS = ("preprocess", "detector", "postprocess", "tracker", "pipeline", "detect")
N_FRAMES = 6
IDLE_S = 3.0  # idle window of the lifecycle server
BAD_AT = 3  # index in the camera's stream where the bad request is sent


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return [cv2.imencode(".jpg", vtest_frame(i))[1].tobytes() for i in range(N_FRAMES)]


@pytest.fixture(scope="module")
def reference(client, frames) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tracks (ids, tlwh) of a clean run of the frames."""
    results = run_camera(client, 9000, frames)
    assert all(r.error is None for r in results)
    assert sum(len(r.tracks.ids) for r in results) > 0, "the clip must produce tracks for the checks to bite"
    return [(r.tracks.ids, r.tracks.tlwh) for r in results]


class Health:
    """Stub pids at the start; ``check`` asserts none crashed or restarted and every model is ready."""

    def __init__(self, server: TritonServer) -> None:
        self.server = server
        self.stubs = stub_processes(server.pid)
        assert {"preprocess_0_0", "tracker_0_0"} <= set(self.stubs), self.stubs

    def check(self, client: grpcclient.InferenceServerClient) -> None:
        assert self.server.exit_code() is None
        assert stub_processes(self.server.pid) == self.stubs, "a python stub crashed or restarted"
        log = self.server.log_text()
        for sign in ("not healthy", "Stub process", "Segmentation fault", "core dumped"):
            assert sign not in log
        for model in MODELS:
            assert client.is_model_ready(model), model


@pytest.fixture(scope="module")
def health(triton_server) -> Health:
    return Health(triton_server)


def raw_infer(client, camera, array: np.ndarray, dtype: str = "BYTES", start=False, end=False) -> str | None:
    """One request with an arbitrary IMAGE tensor; returns the error message, None on success."""
    tensor = grpcclient.InferInput("IMAGE", list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    try:
        client.infer("pipeline", [tensor], sequence_id=camera, sequence_start=start, sequence_end=end)
    except InferenceServerException as error:
        assert error.status() == "StatusCode.INVALID_ARGUMENT", error
        return error.message()
    return None


def one(data: bytes) -> np.ndarray:
    return np.array([[data]], dtype=np.object_)


def png_of(shape: tuple[int, ...]) -> bytes:
    return cv2.imencode(".png", np.zeros(shape, np.uint8))[1].tobytes()


# (id, IMAGE array from a good frame, datatype, what the message must say, whether our code names the camera)
BAD_REQUESTS: list[tuple[str, Callable[[bytes], np.ndarray], str, str, bool]] = [
    ("empty", lambda jpg: one(b""), "BYTES", "IMAGE is empty", True),
    ("truncated-jpeg", lambda jpg: one(jpg[: len(jpg) // 2]), "BYTES", "truncated JPEG", True),
    ("not-an-image", lambda jpg: one(b"GIF89a not really"), "BYTES", "not a JPEG or PNG", True),
    (
        "over-byte-limit",
        lambda jpg: one(jpg[:-2] + bytes(20 * 1024 * 1024) + b"\xff\xd9"),
        "BYTES",
        "the limit is 20971520 bytes",
        True,
    ),
    ("over-side-limit", lambda jpg: one(png_of((2, 8193, 3))), "BYTES", "8193x2 pixels, the limit is 8192", True),
    ("two-images-batched", lambda jpg: np.array([[jpg], [jpg]], np.object_), "BYTES", "one item per request", True),
    # Refused by Triton before any model runs: its message names the input and the problem.
    ("two-images-one-row", lambda jpg: np.array([[jpg, jpg]], np.object_), "BYTES", "unexpected shape", False),
    ("wrong-dtype", lambda jpg: np.zeros((1, 1), np.float32), "FP32", "data-type is 'FP32'", False),
]


@pytest.mark.parametrize("make,dtype,problem,names_camera", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_fails_alone_and_the_camera_goes_on(
    client, health, frames, reference, make, dtype, problem, names_camera
):
    camera = 100 + [c[3] for c in BAD_REQUESTS].index(problem)
    stream = CameraStream(client, camera)
    tracks = []
    for index, jpg in enumerate(frames):
        if index == BAD_AT:
            message = raw_infer(client, camera, make(jpg), dtype)
            assert message is not None and problem in message
            if names_camera:
                assert f"camera {camera}:" in message
        result, restarted = stream.send(jpg, last=index == len(frames) - 1)
        assert not restarted
        tracks.append(result)
    for got, (ids, tlwh) in zip(tracks, reference):
        np.testing.assert_array_equal(got.ids, ids)
        np.testing.assert_allclose(got.tlwh, tlwh, atol=1e-3)
    health.check(client)


ACCEPTED = {
    "png": lambda: cv2.imencode(".png", vtest_frame(0))[1].tobytes(),
    "gray-jpeg": lambda: cv2.imencode(".jpg", cv2.cvtColor(vtest_frame(0), cv2.COLOR_BGR2GRAY))[1].tobytes(),
    "cmyk-jpeg": lambda: flat_cmyk_jpeg(48, 64, (255, 0, 0, 255)),
    "one-pixel": lambda: png_of((1, 1, 3)),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_other_formats_are_accepted(client, health, frames, name):
    camera = 200 + list(ACCEPTED).index(name)
    results = run_camera(client, camera, [ACCEPTED[name](), frames[1], frames[2]])
    assert [r.error for r in results] == [None, None, None]
    if name == "png":  # the same picture losslessly: the same people are found
        assert len(results[0].tracks.ids) > 0
    health.check(client)


def test_first_request_without_start_names_the_sequence(client, health, frames):
    message = raw_infer(client, 301, one(frames[0]))
    assert "sequence 301" in message and "must specify the START flag" in message
    assert raw_infer(client, 301, one(frames[0]), start=True) is None  # the camera then starts normally
    assert raw_infer(client, 301, one(frames[1]), end=True) is None
    health.check(client)


def test_correlation_id_zero_is_refused(client, health, frames):
    assert "non-zero" in raw_infer(client, 0, one(frames[0]), start=True)
    assert "non-zero" in raw_infer(client, 0, one(frames[0]))
    health.check(client)


def test_isolation_in_shared_batches(triton_factory: ServerFactory, tmp_path_factory, frames):
    """A camera sending bad frames in the same batches as two good cameras changes nothing for them."""
    repo = render(
        "cpu", tmp_path_factory.mktemp("batching") / "repo", {"python_max_queue_delay_us": "30000"}
    )
    server = triton_factory(repo)
    health = Health(server)

    def run(cameras: dict[int, list[bytes]]) -> dict[int, list]:
        results: dict[int, list] = {}

        def one_camera(camera: int, stream_frames: list[bytes]) -> None:
            with grpcclient.InferenceServerClient(server.grpc_url) as c:
                results[camera] = run_camera(c, camera, stream_frames)

        threads = [threading.Thread(target=one_camera, args=item) for item in cameras.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    clean = run({1: frames, 2: frames[::-1]})
    bad = [b"", frames[1][:500], b"junk", frames[3][:-100]] * 2
    mixed = run({11: frames, 12: frames[::-1], 13: [frames[0], *bad, frames[1]]})
    for camera, base in ((11, 1), (12, 2)):
        for got, want in zip(mixed[camera], clean[base]):
            assert got.error is None
            np.testing.assert_array_equal(got.tracks.ids, want.tracks.ids)
            np.testing.assert_allclose(got.tracks.tlwh, want.tracks.tlwh, atol=1e-3)
    assert [r.error is None for r in mixed[13]] == [True] + [False] * len(bad) + [True]
    assert all("camera 13:" in r.error for r in mixed[13][1:-1])
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        stats = c.get_inference_statistics("preprocess", as_json=True)["model_stats"][0]["batch_stats"]
        assert max(int(s["batch_size"]) for s in stats) > 1, "no shared batch formed: the test did not bite"
        health.check(c)


@pytest.fixture(scope="module")
def lifecycle_server(triton_factory: ServerFactory, tmp_path_factory) -> TritonServer:
    """The cpu profile with a short idle window and room for only 2 live cameras.

    The window must outlast one frame's latency with 5 cameras on a busy 2-core box (p99 ~0.7 s seen).
    """
    repo = render(
        "cpu",
        tmp_path_factory.mktemp("lifecycle") / "repo",
        {"idle_timeout_s": str(IDLE_S), "max_candidate_sequences": "2"},
    )
    return triton_factory(repo)


def test_idle_camera_is_reclaimed_and_restarts(lifecycle_server, frames):
    health = Health(lifecycle_server)
    with grpcclient.InferenceServerClient(lifecycle_server.grpc_url) as c:
        stream = CameraStream(c, 41)
        first, _ = stream.send(frames[0])
        stream.send(frames[1])
        time.sleep(IDLE_S + 1.5)
        message = raw_infer(c, 41, one(frames[2]))
        assert "sequence 41" in message and "START" in message
        tracks, restarted = stream.send(frames[2])  # the client's restart rule: resend with START
        assert restarted and stream.restarts == 1
        assert len(tracks.ids) and tracks.ids.min() == 1  # a fresh tracker: ids from 1 again
        stream.send(frames[3], last=True)
        assert "idle cameras [41]" in lifecycle_server.log_text()  # the tracker freed its state
        health.check(c)


def test_more_cameras_than_slots_wait_their_turn(lifecycle_server, frames):
    """5 cameras on 2 sequence slots: the others wait (no error) and every camera's tracks are right."""
    health = Health(lifecycle_server)
    with grpcclient.InferenceServerClient(lifecycle_server.grpc_url) as c:
        reference = run_camera(c, 50, frames)
    results: dict[int, list] = {}

    def one_camera(camera: int) -> None:
        with grpcclient.InferenceServerClient(lifecycle_server.grpc_url) as c:
            results[camera] = run_camera(c, camera, frames)

    threads = [threading.Thread(target=one_camera, args=(cam,)) for cam in range(51, 56)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for camera, got in results.items():
        for r, want in zip(got, reference):
            assert r.error is None and not r.restarted, (camera, r.error)
            np.testing.assert_array_equal(r.tracks.ids, want.tracks.ids)
            np.testing.assert_allclose(r.tracks.tlwh, want.tracks.tlwh, atol=1e-3)
    with grpcclient.InferenceServerClient(lifecycle_server.grpc_url) as c:
        health.check(c)


def test_short_lived_cameras_leave_tracker_memory_flat(lifecycle_server, frames):
    """Many cameras of two frames each (END on the last): the tracker stub's RSS stays flat."""
    tracker_pid = stub_processes(lifecycle_server.pid)["tracker_0_0"]
    with grpcclient.InferenceServerClient(lifecycle_server.grpc_url) as c:

        def wave(first: int, count: int) -> None:
            for camera in range(first, first + count):
                assert all(r.error is None for r in run_camera(c, camera, frames[:2]))

        wave(1000, 50)  # warm up allocator and caches
        before = rss_bytes(tracker_pid)
        wave(2000, 200)
        after = rss_bytes(tracker_pid)
    assert after - before < 2 * 1024 * 1024, (before, after)
    assert stub_processes(lifecycle_server.pid)["tracker_0_0"] == tracker_pid
