"""The gpu profile through a real tritonserver (run by `make test-gpu` on a CUDA machine).

A small YOLOX (random weights, buckets up to 8) keeps it quick; the code paths are the deployed ones.
"""

import time
import urllib.request

import numpy as np
import pytest
import torch

from pipeline_config.render import load_profile, render
from pipeline_server.server import Ports, TritonServer, free_ports
from tests.gpu.helpers import SERVER_SETTINGS, server_frames
from tests.image_samples import cut_and_patched, scan_bomb

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def frames():
    return server_frames()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    repo = render("gpu", out / "repo", SERVER_SETTINGS)
    with TritonServer(repo, Ports(*free_ports(3)), log_path=out / "tritonserver.log", startup_timeout_s=300) as srv:
        yield srv


def _local_tracks(frames):
    """The same stages in-process: nvJPEG, letterbox, the fused graph, then one ByteTracker."""
    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.preprocess import decode_images, letterbox_batch
    from pipeline_models.settings import TrackerConfig, from_parameters
    from pipeline_models.tracking import ByteTracker

    profile = load_profile("gpu", SERVER_SETTINGS)
    detector = GraphedDetector(
        "yolox_tiny", 1, device="cuda", buckets=(1,), conf_thresh=0.02, pre_nms_topk=30, cuda_graphs=False
    )
    tracker = ByteTracker(from_parameters(TrackerConfig, profile.parameters))
    out = []
    for data in frames:
        images, meta = letterbox_batch(decode_images([data], torch.device("cuda")), (640, 640))
        (boxes, scores), = detector.detect(images, meta)
        out.append((boxes, tracker.update_arrays(boxes, scores)))
    return out


def _infer(client, data, camera, start=False):
    import tritonclient.grpc as grpcclient

    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[data]], dtype=np.object_))
    res = client.infer("pipeline", [inp], sequence_id=camera, sequence_start=start)
    return res.as_numpy("TRACK_IDS")[0], res.as_numpy("BOXES")[0]


def test_two_cameras_and_a_bad_frame_match_the_in_process_stages(server, frames):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    local = _local_tracks(frames)
    assert np.mean([len(b) for b, _ in local]) > 1  # the threshold lets detections through
    for k, data in enumerate(frames):
        for camera in (11, 12):
            ids, boxes = _infer(client, data, camera, start=k == 0)
            np.testing.assert_array_equal(ids, local[k][1].ids)
            np.testing.assert_allclose(boxes, local[k][1].xyxy, atol=0.05)
        if k == 2:
            with pytest.raises(grpcclient.InferenceServerException, match="camera 12"):
                _infer(client, b"\xff\xd8 not a jpeg", 12)
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    refused = [line for line in text.splitlines() if line.startswith("pipeline_decode_failures_total{")]
    assert len(refused) == 1 and 'camera="12"' in refused[0] and refused[0].endswith(" 1")


def test_concurrent_cameras_each_get_their_own_frames_detections(server, frames):
    """16 cameras at once through `detect`, each at its own frame size: the model forms mixed batches by
    itself and must answer every request with the detections of that request's image, in its pixels."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2
    import tritonclient.grpc as grpcclient

    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.preprocess import decode_images, letterbox_batch

    sizes = [(720, 1280), (360, 640), (540, 960), (1080, 1920)]
    def encoded(k, hw):
        image = cv2.imdecode(np.frombuffer(frames[k], np.uint8), cv2.IMREAD_COLOR)
        return cv2.imencode(".jpg", cv2.resize(image, hw[::-1]))[1].tobytes()

    variants = {(k, hw): encoded(k, hw) for k in range(len(frames)) for hw in sizes}
    detector = GraphedDetector(
        "yolox_tiny", 1, device="cuda", buckets=(1,), conf_thresh=0.02, pre_nms_topk=30, cuda_graphs=False
    )
    expected = {}
    for key, data in variants.items():
        images, meta = letterbox_batch(decode_images([data], torch.device("cuda")), (640, 640))
        expected[key] = detector.detect(images, meta)[0][0]

    def camera_run(camera):
        client = grpcclient.InferenceServerClient(server.grpc_url)
        hw = sizes[camera % len(sizes)]
        out = []
        for step in range(len(frames)):
            k = (step + camera) % len(frames)
            inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
            inp.set_data_from_numpy(np.array([[variants[(k, hw)]]], dtype=np.object_))
            out.append(((k, hw), client.infer("detect", [inp]).as_numpy("BOXES")[0]))
        return out

    with ThreadPoolExecutor(16) as pool:
        answers = [a for run in pool.map(camera_run, range(16)) for a in run]
    assert len(answers) == 16 * len(frames)
    for key, boxes in answers:
        ref = expected[key]
        assert len(ref) > 0 and abs(len(boxes) - len(ref)) <= 1
        scale = key[1][0] / 360  # FP16 differences between buckets grow with the frame's scale
        dist = np.abs(ref[:, None, :] - boxes[None, :, :]).max(axis=2).min(axis=1)
        assert np.mean(dist < 1.0 * scale) > 0.9, key


def test_gpu_server_refuses_the_scan_bomb_fast_and_serves_thin_images(server):
    """Through the real gpu server: thin frames get answers, the scan bomb and a cut JPEG with restart
    markers are refused with their reasons, and a healthy camera's frame right after is answered fast."""
    import cv2
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)

    def detect(data):
        inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[data]], dtype=np.object_))
        return client.infer("detect", [inp]).as_numpy("BOXES")[0]

    for hw in [(1, 1), (1, 8192), (8192, 1), (3, 2000), (2000, 3)]:
        detect(cv2.imencode(".jpg", np.full((*hw, 3), 90, np.uint8))[1].tobytes())
    progressive = cv2.imencode(".jpg", np.zeros((4096, 4096, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
    bomb = scan_bomb(progressive.tobytes(), 400)
    start = time.perf_counter()
    with pytest.raises(grpcclient.InferenceServerException, match=r"\[too_large\].*scans"):
        detect(bomb)
    assert time.perf_counter() - start < 1.0
    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    frame = cv2.GaussianBlur(noise, (5, 5), 0)
    cut = cut_and_patched(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes())
    with pytest.raises(grpcclient.InferenceServerException, match=r"\[corrupt\].*restart markers"):
        detect(cut)
    start = time.perf_counter()
    detect(cv2.imencode(".jpg", frame)[1].tobytes())
    assert time.perf_counter() - start < 1.0
