"""Appearance-aided association on a real tritonserver: the cpu profile rendered with ``reid_model`` (the
OSNet x0.25 fixture) and ``appearance_association=true`` (reid embeds every detection before the tracker).

- A camera whose START turns the option off gets exactly ByteTrack's tracks (the ReID-off composition
  in-process, ``LocalPipeline``), through the same ensemble; one with it on gets aligned outputs and
  global ids, distinct within a frame.
- Issue 18's acceptance scene (``two_views``): with the option on, a person seen by both cameras carries
  one global id in both in at least 90% of the co-visible frames; two persons never share one.
- Bad input: a START with a bad appearance value is refused naming the parameter and the camera; the
  tracker and reid called directly (forged or missing token) are refused as forbidden.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.sources import video_jpegs
from pipeline_client.triton_client import image_input
from pipeline_config.render import render
from pipeline_server.server import TritonServer
from pipeline_tools.local_pipeline import LocalPipeline
from tests.integration import two_views
from tests.unit.sample_data import REPO, data_path

FIXTURE = REPO.parent / "shared" / "fixtures" / "reid" / "osnet_x0_25_msmt17.onnx"
pytestmark = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"ReID test model {FIXTURE} absent")

FRAMES = 30
OUTPUTS = ("TRACK_IDS", "BOXES", "SCORES", "GLOBAL_IDS", "NAMES")
#: Issue 18's target. Measured 0.91 here (128 of 140 matched co-visible person-frames; 0.88 without the
#: option, test_reid.py); a flip of the few person-frames at the margin would show as a failure.
MIN_SHARED_FRACTION = 0.9


@pytest.fixture(scope="module")
def server(triton_factory, tmp_path_factory) -> TritonServer:
    out = tmp_path_factory.mktemp("appearance") / "model_repository"
    return triton_factory(render("cpu", out, {"reid_model": str(FIXTURE), "appearance_association": "true"}))


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return video_jpegs(data_path("vtest.avi"), FRAMES)


def stream(url: str, camera, jpegs: list[bytes], start_parameters=None) -> list[dict[str, np.ndarray]]:
    frames = []
    with grpcclient.InferenceServerClient(url) as client:
        for i, jpeg in enumerate(jpegs):
            result = client.infer(
                "pipeline", [image_input(jpeg)], outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS],
                sequence_id=camera, sequence_start=i == 0, sequence_end=i == len(jpegs) - 1,
                parameters=(start_parameters or {}) if i == 0 else None,
            )
            frames.append({name: result.as_numpy(name)[0] for name in OUTPUTS})
    return frames


def test_a_camera_with_the_option_off_gets_bytetracks_tracks(server, jpegs):
    local = LocalPipeline.from_profile("cpu")
    got = stream(server.grpc_url, 1, jpegs, {"appearance_association": False})
    for i, (frame, data) in enumerate(zip(got, jpegs, strict=True)):
        want = local.track(1, data, start=i == 0)
        np.testing.assert_array_equal(frame["TRACK_IDS"], want.ids, err_msg=f"frame {i}")
        np.testing.assert_allclose(frame["BOXES"], want.xyxy, atol=1e-3, err_msg=f"frame {i}")
    assert sum(len(f["TRACK_IDS"]) for f in got) > 30


def test_with_the_option_on_outputs_are_aligned_and_global_ids_distinct(server, jpegs):
    got = stream(server.grpc_url, 2, jpegs)
    for i, frame in enumerate(got):
        n = len(frame["TRACK_IDS"])
        assert frame["BOXES"].shape == (n, 4) and frame["GLOBAL_IDS"].shape == frame["NAMES"].shape == (n,)
        assert len(set(frame["GLOBAL_IDS"].tolist())) == n and (frame["GLOBAL_IDS"] > 0).all(), f"frame {i}"
    assert sum(len(f["TRACK_IDS"]) for f in got) > 30
    # the same frames again, from a fresh START: the same tracks (the association is deterministic)
    again = stream(server.grpc_url, 2, jpegs)
    for a, b in zip(got, again, strict=True):
        np.testing.assert_array_equal(a["TRACK_IDS"], b["TRACK_IDS"])


@pytest.mark.parametrize(
    ("name", "value"), [("appearance_thresh", 5), ("proximity_thresh", "near"), ("appearance_association", 3)]
)
def test_a_start_with_a_bad_appearance_value_is_refused(server, jpegs, name, value):
    with pytest.raises(InferenceServerException, match=rf"\[bad_request\] camera 7: START parameter {name} must be"):
        stream(server.grpc_url, 7, jpegs[:1], {name: value})


def direct_call(client, model: str, inputs: dict[str, np.ndarray], camera=5):
    tensors = []
    for name, array in inputs.items():
        dtype = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}[array.dtype]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return client.infer(model, tensors, sequence_id=camera, sequence_start=True)


def test_the_tracker_and_reid_refuse_direct_calls(server):
    boxes = np.array([[[10, 10, 60, 160]]], np.float32)
    scores = np.array([[0.9]], np.float32)
    forged = np.zeros((1, 16), np.uint8)
    dets = {"DET_BOXES": boxes, "DET_SCORES": scores}
    calls = [
        ("tracker", {**dets, "DET_EMBEDDINGS": np.ones((1, 1, 512), np.float32), "TOKEN": forged}),
        ("tracker", {**dets, "DET_EMBEDDINGS": np.full((1, 1, 512), np.nan, np.float32), "TOKEN": forged}),
        ("reid", {"FRAME": np.zeros((1, 200, 200, 3), np.uint8), **dets, "TOKEN": forged}),
        ("reid", {"FRAME": np.zeros((1, 200, 200, 3), np.uint8), **dets}),
    ]
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for model, inputs in calls:
            with pytest.raises(InferenceServerException, match=r"\[forbidden\] camera 5: internal model"):
                direct_call(client, model, inputs)


def test_two_overlapping_cameras_reach_the_acceptance_target(server, record_property):
    full_frames = video_jpegs(data_path("vtest.avi"), two_views.FRAMES)
    figure, _ = two_views.two_view_figure(server.grpc_url, full_frames)
    record_property("cross_camera", figure.as_dict())
    print(f"cross-camera with appearance association: {figure.as_dict()}")
    assert figure.matched >= 50, figure
    assert figure.fraction >= MIN_SHARED_FRACTION, figure
    assert figure.shared_id_pairs == 0, figure
