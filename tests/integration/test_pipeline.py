"""The product on a real tritonserver: the ``pipeline`` and ``detect`` ensembles over gRPC.

Each result is compared with the same composition run in-process (``LocalPipeline`` with the profile's
parameters): same detections, same IDs, same boxes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client import track
from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import IDENTITY_OUTPUTS, OUTPUT_NAMES, check_ready, image_input, run_camera
from pipeline_config.render import render
from pipeline_models.types import Tracks
from pipeline_tools.local_pipeline import LocalPipeline
from tests.integration.server_metrics import Samples, finished, scrape, settled
from tests.unit.sample_data import MODELS, data_path

FRAMES = 100
BOX_ATOL = 1e-3  # float32 on the wire vs float64 in-process


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """The first ``FRAMES`` frames of vtest.avi as JPEG bytes (what a camera sends)."""
    frames = video_jpegs(data_path("vtest.avi"), FRAMES)
    assert len(frames) == FRAMES
    return frames


@pytest.fixture(scope="module")
def expected(local: LocalPipeline, jpegs: list[bytes]) -> list[Tracks]:
    """In-process tracks of one camera over ``jpegs``."""
    return [local.track(1, data, start=i == 0) for i, data in enumerate(jpegs)]


@pytest.fixture(scope="module")
def grpc(triton_server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton_server.grpc_url)


def run_cameras(url: str, streams: dict[int, list[bytes]]) -> dict[int, list]:
    """Runs each camera's frames in its own thread and client, one frame in flight per camera."""
    results: dict[int, list] = {}

    def camera(camera_id: int) -> None:
        results[camera_id] = run_camera(grpcclient.InferenceServerClient(url), camera_id, streams[camera_id])

    threads = [threading.Thread(target=camera, args=(c,)) for c in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def assert_same_tracks(got: Tracks, want: Tracks, where: str) -> None:
    np.testing.assert_array_equal(got.ids, want.ids, err_msg=where)
    np.testing.assert_allclose(got.tlwh, want.tlwh, atol=BOX_ATOL, err_msg=where)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-6, err_msg=where)


def test_health_and_metadata(triton_server, grpc):
    assert grpc.is_server_live() and grpc.is_server_ready()
    for model in ("preprocess", "detector", "postprocess", "tracker", "pipeline", "detect"):
        assert grpc.is_model_ready(model), model
    meta = grpc.get_model_metadata("pipeline", as_json=True)
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("IMAGE", "BYTES")]
    outputs = {t["name"]: (t["datatype"], t["shape"]) for t in meta["outputs"]}
    assert outputs == {
        "TRACK_IDS": ("INT64", ["-1", "-1"]),
        "BOXES": ("FP32", ["-1", "-1", "4"]),
        "SCORES": ("FP32", ["-1", "-1"]),
    }
    with urllib.request.urlopen(f"http://{triton_server.http_url}/v2/health/ready") as reply:
        assert reply.status == 200


def test_pipeline_equals_in_process_composition(grpc, jpegs, expected):
    results = run_camera(grpc, 101, jpegs)
    assert [r.error for r in results] == [None] * FRAMES
    for result, want in zip(results, expected):
        assert_same_tracks(result.tracks, want, f"frame {result.index + 1}")
    ids = np.unique(np.concatenate([t.ids for t in expected]))
    assert ids[0] == 1 and len(ids) >= 5  # people come and go in vtest


def test_concurrent_cameras_each_get_what_they_get_alone(triton_server, jpegs, local, expected):
    """Two cameras at once (one frame in flight each, so each camera's frames stay in order)."""
    reversed_frames = jpegs[::-1]
    want_reversed = [local.track(2, data, start=i == 0) for i, data in enumerate(reversed_frames)]
    results = run_cameras(triton_server.grpc_url, {201: jpegs, 202: reversed_frames})
    for camera_id, want in ((201, expected), (202, want_reversed)):
        got = results[camera_id]
        assert [r.error for r in got] == [None] * FRAMES
        for result, tracks in zip(got, want):
            assert_same_tracks(result.tracks, tracks, f"camera {camera_id} frame {result.index + 1}")


def test_two_tracker_instances_keep_each_camera_on_one(triton_factory, tmp_path_factory, jpegs, expected):
    """tracker_instances = 2: the sequence batcher binds each camera to one instance (which holds its
    state), so four cameras at once each get what one camera gets alone, and both instances serve some."""
    repo = render("cpu", tmp_path_factory.mktemp("two-trackers") / "repo", {"tracker_instances": "2"})
    server = triton_factory(repo)
    results = run_cameras(server.grpc_url, {camera: jpegs[:30] for camera in (501, 502, 503, 504)})
    for camera, got in results.items():
        assert [r.error for r in got] == [None] * 30
        for result, want in zip(got, expected):
            assert_same_tracks(result.tracks, want, f"camera {camera} frame {result.index + 1}")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for camera in (511, 512, 513, 514):  # started, not ended: each instance holds the state of its own
        client.infer("pipeline", [image_input(jpegs[0])], sequence_id=camera, sequence_start=True)
    live = live_cameras(settled(server.metrics_url, {"tracker": 4 * 30 + 4}))  # a fresh server
    assert sorted(live) == ["tracker_0_0", "tracker_0_1"] and sum(live.values()) == 4 and min(live.values()) >= 1


def test_corrupt_frame_fails_alone_and_the_cameras_carry_on(triton_server, jpegs, local):
    """Camera 301's 6th frame is corrupt: only it fails; 301 goes on as if it had never been sent."""
    corrupt = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8  # a JPEG header, then noise
    frames = jpegs[:5] + [corrupt] + jpegs[5:40]
    results = run_cameras(triton_server.grpc_url, {301: frames, 302: jpegs[:40]})
    bad = results[301][5]
    assert bad.error is not None and "camera 301" in bad.error and "IMAGE" in bad.error
    assert [r.error for r in results[301] if r.index != 5] == [None] * 40
    assert [r.error for r in results[302]] == [None] * 40
    want = [local.track(3, data, start=i == 0) for i, data in enumerate(jpegs[:40])]
    good = [r for r in results[301] if r.index != 5]
    for result, tracks in zip(good, want):
        assert_same_tracks(result.tracks, tracks, f"camera 301 frame {result.index + 1}")
    for result, tracks in zip(results[302], want):
        assert_same_tracks(result.tracks, tracks, f"camera 302 frame {result.index + 1}")


def live_cameras(samples: Samples) -> dict[str, float]:
    """``pipeline_live_cameras`` by tracker instance."""
    return {dict(labels)["model_instance"]: v for (name, labels), v in samples.items() if name == "pipeline_live_cameras"}


def test_end_frees_the_camera_state(triton_server, grpc, jpegs):
    def send(camera: int, start: bool = False, end: bool = False):
        return grpc.infer("pipeline", [image_input(jpegs[0])], sequence_id=camera, sequence_start=start,
                          sequence_end=end)

    def live(tracked: float) -> float:
        return sum(live_cameras(settled(triton_server.metrics_url, {"tracker": tracked})).values())

    tracked = finished(scrape(triton_server.metrics_url), "tracker")
    before = live(tracked)
    send(401, start=True)
    assert live(tracked + 1) == before + 1
    send(401, end=True)
    assert live(tracked + 2) == before
    with pytest.raises(InferenceServerException, match="START"):
        send(401)  # the sequence is over: a new one needs START
    ids = send(401, start=True).as_numpy("TRACK_IDS")
    assert ids.min(initial=1) == 1  # a fresh tracker: IDs from 1 again
    send(401, end=True)


def test_without_reid_the_client_requests_no_identities_and_its_jsonl_matches_the_mot_text(
    triton_server, grpc, expected, tmp_path
):
    assert check_ready(grpc, "pipeline") == (), "this server runs no ReID: no GLOBAL_IDS/NAMES outputs"
    with pytest.raises(InferenceServerException, match="GLOBAL_IDS"):  # why the client asks first
        grpc.infer(
            "pipeline", [image_input(b"\xff\xd8")], sequence_id=990, sequence_start=True, sequence_end=True,
            outputs=[grpcclient.InferRequestedOutput(n) for n in (*OUTPUT_NAMES, *IDENTITY_OUTPUTS)],
        )  # fmt: skip
    frames = 30
    out, jsonl, video = tmp_path / "t.txt", tmp_path / "t.jsonl", tmp_path / "t.mp4"
    status = track.main([
        "--url", triton_server.grpc_url, "--source", str(data_path("vtest.avi")), "--max-frames", str(frames),
        "--camera-id", "77", "--out", str(out), "--jsonl", str(jsonl), "--annotate", str(video), "--no-progress",
    ])  # fmt: skip
    assert status == track.EXIT_OK
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(1, frames + 1))
    mot: dict[int, list[list[float]]] = {}
    for line in out.read_text().splitlines():
        frame, *values = line.split(",")
        mot.setdefault(int(frame), []).append([float(v) for v in values[:6]])
    for record, want in zip(records, expected[:frames]):
        where = f"frame {record['frame']}"
        assert [t["id"] for t in record["tracks"]] == want.ids.tolist(), where
        got = np.array([t["box"] for t in record["tracks"]], np.float64).reshape(-1, 4)
        np.testing.assert_allclose(got, want.xyxy, atol=BOX_ATOL, err_msg=where)
        assert all(t["global_id"] is None and t["name"] is None for t in record["tracks"]), where
        rows = np.array(mot.get(record["frame"], []), np.float64).reshape(-1, 6)
        np.testing.assert_array_equal(rows[:, 0], want.ids, err_msg=where)
        np.testing.assert_allclose(rows[:, 1:5], want.tlwh, atol=BOX_ATOL, err_msg=where)
    assert sum(len(r["tracks"]) for r in records) > 0, "vtest's first frames have walkers"
    assert video.stat().st_size > 0


def test_detect_equals_the_detect_cli(grpc):
    names = ["messi5.jpg", "fruits.jpg"]
    cli = subprocess.run(
        [sys.executable, "-m", "pipeline_tools.detect", *map(str, map(data_path, names)), "--conf", "0.1", "--json"],
        capture_output=True, text=True, check=True,
    )
    rows = [json.loads(line) for line in cli.stdout.splitlines()]
    assert len(rows) == len(names)
    for name, row in zip(names, rows):
        result = grpc.infer("detect", [image_input(data_path(name).read_bytes())])
        boxes, scores = result.as_numpy("BOXES")[0], result.as_numpy("SCORES")[0]
        want = np.array(row["detections"], np.float64).reshape(-1, 5)
        assert len(boxes) == len(want), name
        np.testing.assert_allclose(boxes, want[:, :4], atol=0.01)
        np.testing.assert_allclose(scores, want[:, 4], atol=1e-4)
    assert len(rows[0]["detections"]) >= 1  # Messi


@pytest.fixture(scope="module")
def yolox_server(triton_factory, tmp_path_factory):
    """The yolox-cpu profile with the real YOLOX-tiny weights (zamba, animals) exported by make."""
    repository = render("yolox-cpu", tmp_path_factory.mktemp("yolox-cpu") / "repo",
                        {"detector_model": str(MODELS / "yolox_tiny.onnx")})
    return triton_factory(repository)


def test_yolox_path_through_the_server(yolox_server, jpegs):
    local = LocalPipeline.from_profile("yolox-cpu", model=str(MODELS / "yolox_tiny.onnx"))
    grpc = grpcclient.InferenceServerClient(yolox_server.grpc_url)
    squirrel = data_path("squirrel_cls.jpg").read_bytes()
    result = grpc.infer("detect", [image_input(squirrel)])
    want = local.detect([squirrel])[0]
    assert len(want) >= 1  # the squirrel (the checkpoint detects animals)
    np.testing.assert_allclose(result.as_numpy("BOXES")[0], want.xyxy, atol=BOX_ATOL)
    np.testing.assert_allclose(result.as_numpy("SCORES")[0], want.scores, atol=1e-5)
    frames = [squirrel] * 3 + jpegs[:3]
    results = run_camera(grpc, 501, frames)
    for result, data in zip(results, frames):
        assert result.error is None
        assert_same_tracks(result.tracks, local.track(501, data, start=result.index == 0), f"frame {result.index}")
