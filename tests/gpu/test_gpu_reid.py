"""ReID on the gpu profile: crops and embeddings on the GPU, and the real tritonserver with ``reid_model`` set.

- ``pipeline_models.gpu.reid`` on CUDA equals the same code on the CPU (crops) and onnx2torch on the CPU /
  ONNX Runtime (embeddings; the CPU unit tests prove those two equal); bad boxes, no tracks, many tracks.
- The Triton crop kernel cuts ``crop_frames``' crops (mixed frame sizes, FP16 channels-last too) and
  refuses bad tables; the embeddings with the crops inside the CUDA graphs equal those with the crops
  before them; a kernel failing at load leaves the ``grid_sample`` crops.
- The server: gpu_detector embeds its detections itself. GLOBAL_IDS and NAMES are aligned with TRACK_IDS;
  two cameras showing the same frames get the same global ids, and exactly the ones the CPU ReID
  (onnx2torch on the CPU, then the same identities code in-process) gives those tracks' detections.
  gpu_detector called directly: EMBEDDINGS per box, equal to the FP32 embedding within FP16's error;
  none for ``detect``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pipeline_models.reid.crop_geometry import valid_boxes
from tests.unit.sample_data import REPO

FIXTURE = REPO.parent / "shared" / "fixtures" / "reid" / "osnet_x0_25_msmt17.onnx"
pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not FIXTURE.is_file(), reason=f"ReID test model {FIXTURE} absent"),
]
# Boxes in a 720x1280 frame: people-sized, over the edges, degenerate (zero size, upside down, NaN, outside).
BOXES = np.array(
    [[100, 200, 180, 420], [600, 150, 660, 330], [1200, 500, 1400, 800], [-50, -40, 60, 200],
     [300, 300, 300, 400], [500, 400, 450, 350], [np.nan, 10, 50, 90], [2000, 900, 2100, 1000]], np.float32
)
# FP32 on both sides (cuDNN's TF32 off, as in the embedder's load check): only the order of sums and
# cuDNN's algorithms differ, a relative error e ~ 1e-5 of the rows, so 1 - cos ~ e^2 / 2 is far below
# 1e-5; a wrong layer costs > 1e-2.
MAX_ONE_MINUS_COS = 1e-5
# The server runs the profile's FP16 (reid_fp16): a unit roundoff of 4.9e-4 per operation, the rows' errors
# mostly cancelling (measured up to 1.9e-4 on random crops); a wrong layer still costs > 1e-2.
MAX_FP16_ONE_MINUS_COS = 1e-3
OUTPUTS = ("TRACK_IDS", "BOXES", "SCORES", "GLOBAL_IDS", "NAMES")


@pytest.fixture(scope="module")
def frames_gpu():
    from pipeline_models.gpu.preprocess import decode_images
    from tests.gpu.helpers import server_frames

    jpegs = server_frames()
    return jpegs, decode_images(jpegs, torch.device("cuda"))


@pytest.fixture(scope="module")
def embedders():
    from pipeline_models.gpu.reid import TorchEmbedder

    torch.backends.cudnn.allow_tf32 = False  # FP32 to compare: cuDNN would take TF32 kernels
    fp32 = {"half": False, "compiled": False}
    return TorchEmbedder(FIXTURE, "cuda", max_batch=32, **fp32), TorchEmbedder(FIXTURE, "cpu", max_batch=32, **fp32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


def test_gpu_crops_and_embeddings_equal_the_cpu_ones(frames_gpu, embedders):
    from pipeline_models.gpu.reid import crop_frames

    _, frames = frames_gpu
    gpu_emb, cpu_emb = embedders
    boxes = [BOXES, BOXES[:3] + 7]
    gpu_crops, gpu_valid = crop_frames(frames[:2], boxes)
    cpu_crops, cpu_valid = crop_frames([f.cpu() for f in frames[:2]], boxes)
    for g, c, b in zip(gpu_valid, cpu_valid, boxes):
        np.testing.assert_array_equal(g, c)
        np.testing.assert_array_equal(g, valid_boxes(b, (720, 1280)))
    assert gpu_crops.is_cuda and gpu_crops.shape == (7, 3, 256, 128)
    np.testing.assert_allclose(gpu_crops.cpu().numpy(), cpu_crops.numpy(), atol=1e-4)  # same float32 maths
    on_gpu = gpu_emb.embed(gpu_crops).cpu().numpy()
    on_cpu = cpu_emb.embed(cpu_crops).numpy()
    assert on_gpu.shape == (7, 512)
    assert 1 - cosines(on_gpu, on_cpu).min() < MAX_ONE_MINUS_COS
    try:
        from pipeline_models.reid.embedder import Embedder

        ort = Embedder(FIXTURE).embed(cpu_crops.numpy())
    except ImportError as exc:  # the GPU machine's onnxruntime may not load beside numpy 1.26
        pytest.skip(f"onnxruntime unavailable here ({exc}); the CPU unit tests compare it")
    assert 1 - cosines(on_gpu, ort).min() < MAX_ONE_MINUS_COS


def test_our_osnet_is_chosen_with_cudnns_tf32_on():
    # The server leaves cuDNN's TF32 on (its default); the load check compares our OSNet with the converted
    # ONNX in full FP32 all the same, and leaves the setting as it found it.
    from pipeline_models.gpu.reid import TorchEmbedder

    torch.backends.cudnn.allow_tf32 = True
    try:
        embedder = TorchEmbedder(FIXTURE, "cuda", max_batch=8, half=True, compiled=False)
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = False
    assert embedder.network == "osnet" and embedder.crops_in_graph


def test_embed_frames_bad_boxes_no_tracks_and_many_tracks(frames_gpu, embedders):
    from pipeline_models.gpu.reid import embed_frames

    _, frames = frames_gpu
    embedder, _ = embedders
    none = embed_frames(embedder, frames[:3], [np.empty((0, 4), np.float32)] * 3)
    assert [e.shape for e in none] == [(0, 512)] * 3
    rng = np.random.default_rng(18)
    corner = rng.uniform([0, 0], [1100, 500], (300, 2))
    many = np.concatenate([corner, corner + rng.uniform([20, 40], [180, 220], (300, 2))], axis=1)
    out = embed_frames(embedder, frames[:3], [BOXES, np.empty((0, 4), np.float32), many.astype(np.float32)])
    assert [e.shape for e in out] == [(8, 512), (0, 512), (300, 512)]
    valid = valid_boxes(BOXES, (720, 1280))
    assert np.isnan(out[0][~valid]).all() and np.isfinite(out[0][valid]).all()
    np.testing.assert_allclose(np.linalg.norm(out[2], axis=1), 1.0, atol=1e-5)
    alone = embed_frames(embedder, frames[2:3], [many[:5].astype(np.float32)])[0]  # batch size changes nothing
    assert 1 - cosines(alone, out[2][:5]).min() < MAX_ONE_MINUS_COS


# The crop kernel against crop_frames' grid_sample, both FP32: grid_sample's coordinates go through
# [-1, 1] and back, which moves a source point by up to ~side * 2^-24 px (1e-4 px at 1920), up to 0.03 grey
# levels across a sharp edge, 5e-4 once normalised (1 / (255 * 0.225) a level); a wrong tap or a half-pixel
# shift costs whole grey levels, > 1e-2.
KERNEL_ATOL = 2e-3
# ... and in FP16: plus half a unit in the last place of values up to 2.7 (2^-10).
KERNEL_FP16_ATOL = KERNEL_ATOL + 2.0**-10


def kernel_crops(frames, boxes, dtype=torch.float32, channels_last=False):
    from pipeline_models.gpu import crop_kernel
    from pipeline_models.gpu.reid import crop_windows, to_device

    valids, frame_of, windows = crop_windows(frames, boxes)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.full((len(frame_of), 3, 256, 128), float("nan"), dtype=dtype, device="cuda").to(memory_format=layout)
    table = to_device(crop_kernel.crop_rows(frames, frame_of, windows), torch.device("cuda"))
    return crop_kernel.crop(table, out), valids


def test_the_crop_kernel_cuts_crop_frames_crops_of_mixed_frame_sizes(frames_gpu):
    from pipeline_models.gpu.reid import crop_frames

    _, frames = frames_gpu
    small = torch.randint(0, 256, (3, 97, 61), dtype=torch.uint8, device="cuda")  # odd sides, crops upscaled
    mixed = [frames[0], small, frames[1]]
    boxes = [BOXES, np.array([[3.5, 2.2, 40.7, 90.1], [0, 0, 61, 97], [50, 80, 300, 300]], np.float32), BOXES[:3] + 7]
    want, want_valid = crop_frames(mixed, boxes)
    got, got_valid = kernel_crops(mixed, boxes)
    for g, w in zip(got_valid, want_valid):
        np.testing.assert_array_equal(g, w)
    assert got.shape == want.shape == (4 + 3 + 3, 3, 256, 128)  # BOXES shows pixels in 4
    np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=0, atol=KERNEL_ATOL)
    half, _ = kernel_crops(mixed, boxes, torch.float16, channels_last=True)  # the model's input, written in place
    assert half.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(half.float().cpu().numpy(), want.cpu().numpy(), rtol=0, atol=KERNEL_FP16_ATOL)


def test_the_crop_kernel_refuses_bad_tables_and_frames(frames_gpu):
    from pipeline_models.gpu import crop_kernel

    _, frames = frames_gpu
    out = torch.empty((2, 3, 256, 128), device="cuda")
    for table in (torch.zeros((3, 7), dtype=torch.int64, device="cuda"),  # rows != crops
                  torch.zeros((2, 6), dtype=torch.int64, device="cuda"),  # columns
                  torch.zeros((2, 7), dtype=torch.int32, device="cuda")):  # dtype
        with pytest.raises(ValueError, match="int64 table"):
            crop_kernel.crop(table, out)
    with pytest.raises(ValueError, match="int64 table"):
        crop_kernel.crop(torch.zeros((2, 7), dtype=torch.int64, device="cuda"), out[:, :1])
    with pytest.raises(ValueError, match="contiguous"):  # the kernel reads planar rows at the frame's address
        crop_kernel.crop_rows([frames[0].transpose(1, 2)], np.zeros(1, np.int64), np.array([[0, 0, 5, 5]]))
    assert crop_kernel.crop(torch.zeros((0, 7), dtype=torch.int64, device="cuda"), out[:0]).shape[0] == 0


def test_crops_in_the_graphs_embed_as_grid_sample_crops_before_them(frames_gpu, embedders):
    from pipeline_models.gpu.reid import TorchEmbedder, embed_frames

    _, frames = frames_gpu
    in_graph, _ = embedders
    before = TorchEmbedder(FIXTURE, "cuda", max_batch=32, half=False, compiled=False, crop_kernel=False)
    assert in_graph.crops_in_graph and not before.crops_in_graph
    rng = np.random.default_rng(4)
    corner = rng.uniform([0, 0], [1100, 400], (45, 2))  # 4 + 45 crops: two passes of 32, the second padded
    many = np.concatenate([corner, corner + rng.uniform([20, 60], [180, 300], (45, 2))], axis=1).astype(np.float32)
    boxes = [BOXES, many]
    got, want = embed_frames(in_graph, frames[:2], boxes), embed_frames(before, frames[:2], boxes)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        ok = np.isfinite(w).all(axis=1)
        assert 1 - cosines(g[ok], w[ok]).min() < MAX_ONE_MINUS_COS
    again = embed_frames(in_graph, frames[1:2], [many[40:]])[0]  # a third pass reuses the graphs' tables
    assert 1 - cosines(again, got[1][40:]).min() < MAX_ONE_MINUS_COS


def test_a_crop_kernel_that_fails_at_load_leaves_the_grid_sample_crops(frames_gpu, monkeypatch, caplog):
    from pipeline_models.gpu import crop_kernel
    from pipeline_models.gpu.reid import TorchEmbedder, embed_frames

    def broken(table, out):
        raise RuntimeError("no compiler for the launcher")

    monkeypatch.setattr(crop_kernel, "crop", broken)
    _, frames = frames_gpu
    embedder = TorchEmbedder(FIXTURE, "cuda", max_batch=8, half=False, compiled=False)
    assert not embedder.crops_in_graph
    assert "crop kernel is unavailable (RuntimeError: no compiler for the launcher)" in caplog.text
    (out,) = embed_frames(embedder, frames[:1], [BOXES])
    assert np.isfinite(out[valid_boxes(BOXES, (720, 1280))]).all()


def reid_server_of(tmp_path_factory, name: str, **settings: str):
    """A gpu profile server with ReID on (and ``settings``), its gpu_detector logging its stages each execute."""
    import os

    from pipeline_config.render import render
    from pipeline_server.server import Ports, TritonServer, free_ports
    from tests.gpu.helpers import SERVER_SETTINGS

    out = tmp_path_factory.mktemp(name)
    repo = render("gpu", out / "repo", {**SERVER_SETTINGS, "reid_model": str(FIXTURE), **settings})
    server = TritonServer(repo, Ports(*free_ports(3)), log_path=out / "tritonserver.log", startup_timeout_s=300)
    before = os.environ.get("PIPELINE_STAGE_LOG")
    os.environ["PIPELINE_STAGE_LOG"] = "1"  # the server's environment is this one at its start
    try:
        with server as srv:
            yield srv
    finally:
        if before is None:
            os.environ.pop("PIPELINE_STAGE_LOG")
        else:
            os.environ["PIPELINE_STAGE_LOG"] = before


@pytest.fixture(scope="module")
def reid_server(tmp_path_factory):
    yield from reid_server_of(tmp_path_factory, "gpureid")


@pytest.fixture(scope="module")
def ahead_server(tmp_path_factory):
    yield from reid_server_of(tmp_path_factory, "gpureid-ahead", reid_ahead="true")


def stream(client, pairs):
    """``(camera, jpeg, start)`` one at a time through ``pipeline``: each frame's outputs."""
    import tritonclient.grpc as grpcclient

    from pipeline_client.triton_client import image_input

    results = []
    for camera, jpeg, start in pairs:
        res = client.infer("pipeline", [image_input(jpeg)], sequence_id=camera, sequence_start=start,
                           outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS])
        results.append({n: res.as_numpy(n)[0] for n in OUTPUTS})
    return results


def detected(client, jpeg: bytes, camera: int = 0) -> dict[str, np.ndarray]:
    """gpu_detector called directly: its BOXES, SCORES and EMBEDDINGS for one frame."""
    import tritonclient.grpc as grpcclient

    from pipeline_client.triton_client import image_input

    names = ("BOXES", "SCORES", "EMBEDDINGS")
    res = client.infer("gpu_detector", [image_input(jpeg)], sequence_id=camera, sequence_start=True,
                       outputs=[grpcclient.InferRequestedOutput(n) for n in names])
    return {n: res.as_numpy(n)[0] for n in names}


def matched_detections(track_boxes: np.ndarray, det_boxes: np.ndarray) -> np.ndarray:
    """Each track's detection: the one it overlaps most (a tracked track's box is its Kalman update with
    that very detection, IoU near 1)."""
    from pipeline_models.tracking.matching import iou_distance

    return iou_distance(track_boxes, det_boxes).argmin(axis=1)


def test_two_cameras_showing_one_scene_get_the_cpu_reids_global_ids(reid_server, frames_gpu):
    import tritonclient.grpc as grpcclient

    from pipeline_models.gpu.reid import TorchEmbedder, embed_frames
    from pipeline_models.reid.identity_step import IdentityService
    from pipeline_models.settings import IdentitySettings, TrackerConfig

    jpegs, decoded = frames_gpu
    pairs = [(camera, jpeg, i == 0) for i, jpeg in enumerate(jpegs) for camera in (11, 12)]
    with grpcclient.InferenceServerClient(reid_server.grpc_url) as client:
        results = stream(client, pairs)
        detections = [detected(client, jpeg) for jpeg in jpegs]
    cam1, cam2 = results[0::2], results[1::2]
    assert sum(len(r["TRACK_IDS"]) for r in cam1) > 0, "no tracks: nothing was re-identified"
    for i, (a, b) in enumerate(zip(cam1, cam2)):
        for r in (a, b):
            n = len(r["TRACK_IDS"])
            assert r["GLOBAL_IDS"].dtype == np.int64 and r["GLOBAL_IDS"].shape == (n,) and r["NAMES"].shape == (n,)
            assert len(set(r["GLOBAL_IDS"].tolist())) == n and (r["GLOBAL_IDS"] > 0).all()
        np.testing.assert_array_equal(a["TRACK_IDS"], b["TRACK_IDS"])
        np.testing.assert_array_equal(a["GLOBAL_IDS"], b["GLOBAL_IDS"], err_msg=f"frame {i}")
    # The CPU ReID of each track's detection (the frames nvJPEG decoded, moved to the host), the same
    # identities code: the global ids the server gives.
    cpu = TorchEmbedder(FIXTURE, "cpu", half=False, compiled=False)
    service = IdentityService(IdentitySettings(), TrackerConfig().max_time_lost)
    expected = []
    for (camera, _, start), r, frame, det in zip(
        pairs, results, [f for f in decoded for _ in (11, 12)], [d for d in detections for _ in (11, 12)]
    ):
        boxes = det["BOXES"][matched_detections(r["BOXES"], det["BOXES"])] if len(r["BOXES"]) else r["BOXES"]
        (emb,) = embed_frames(cpu, [frame.cpu()], [boxes])
        assigned = service.assign(camera, 0.0, r["TRACK_IDS"], r["BOXES"], r["SCORES"], emb, start=start)
        expected.append(assigned.global_ids)
    got = np.concatenate([r["GLOBAL_IDS"] for r in results])
    want = np.concatenate(expected)
    mapping = dict(zip(want.tolist(), got.tolist()))  # the store may number from elsewhere: a bijection
    assert len(set(mapping.values())) == len(mapping)
    np.testing.assert_array_equal(got, [mapping[g] for g in want.tolist()])


@pytest.mark.parametrize("server", ["reid_server", "ahead_server"])
def test_gpu_detector_embeds_each_detection_as_the_fp32_reid_does(server, request, frames_gpu, embedders):
    import tritonclient.grpc as grpcclient
    from torchvision.io import encode_jpeg

    from pipeline_client.triton_client import image_input
    from pipeline_models.gpu.reid import embed_frames

    reid_server = request.getfixturevalue(server)
    jpegs, decoded = frames_gpu
    blank = bytes(encode_jpeg(torch.zeros((3, 64, 96), dtype=torch.uint8)).numpy())
    with grpcclient.InferenceServerClient(reid_server.grpc_url) as client:
        out = [detected(client, jpeg, camera=21) for jpeg in jpegs[:4]]
        empty = detected(client, blank, camera=22)
        plain = client.infer("detect", [image_input(jpegs[0])])  # detect: no embeddings asked for, none made
    assert {o.name for o in plain.get_response().outputs} == {"BOXES", "SCORES"}
    assert empty["EMBEDDINGS"].shape[0] == len(empty["BOXES"])
    for result, frame in zip(out, decoded):
        n = len(result["BOXES"])
        assert n > 0 and result["EMBEDDINGS"].shape == (n, 512) and result["EMBEDDINGS"].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(result["EMBEDDINGS"], axis=1), 1.0, atol=1e-3)
        (local,) = embed_frames(embedders[0], [frame], [result["BOXES"]])  # FP32 on this GPU
        assert 1 - cosines(result["EMBEDDINGS"], local).min() < MAX_FP16_ONE_MINUS_COS
    stages = [line for line in reid_server.log_path.read_text().splitlines() if "gpu_detector stages" in line]
    queued = sum(int(m) for m in re.findall(r"\((\d+) queued with their batch\)", "\n".join(stages)))
    # With reid_ahead the first frame's crops outnumber the first guess (one a frame); the next ones fit.
    assert (queued > 0) == (server == "ahead_server"), stages[-4:]


@pytest.fixture(scope="module")
def interval_server(tmp_path_factory):
    from pipeline_config.render import render
    from pipeline_server.server import Ports, TritonServer, free_ports
    from tests.gpu.helpers import SERVER_SETTINGS

    out = tmp_path_factory.mktemp("gpureid-interval")
    repo = render("gpu", out / "repo", {**SERVER_SETTINGS, "reid_model": str(FIXTURE), "reid_interval": "2"})
    server = TritonServer(repo, Ports(*free_ports(3)), log_path=out / "tritonserver.log", startup_timeout_s=300)
    with server as srv:
        yield srv


def test_reid_interval_embeds_one_frame_in_two_per_camera(interval_server, frames_gpu):
    import tritonclient.grpc as grpcclient

    from pipeline_models.reid.embedding_turns import EmbeddingTurns

    jpegs, _ = frames_gpu
    turns = EmbeddingTurns(2)
    with grpcclient.InferenceServerClient(interval_server.grpc_url) as client:
        got = {camera: [detected(client, jpeg, camera=camera) for jpeg in jpegs[:4]] for camera in (31, 32)}
        tracked = stream(client, [(41, jpeg, i == 0) for i, jpeg in enumerate(jpegs)])
    for camera, results in got.items():
        pattern = [turns.take(camera) for _ in results]
        assert pattern.count(True) == 2, pattern
        for result, embedded in zip(results, pattern):
            n = len(result["BOXES"])
            assert n > 0 and result["EMBEDDINGS"].shape == (n, 512)
            if embedded:
                np.testing.assert_allclose(np.linalg.norm(result["EMBEDDINGS"], axis=1), 1.0, atol=1e-3)
            else:
                assert np.isnan(result["EMBEDDINGS"]).all()
    assert sum(len(r["TRACK_IDS"]) for r in tracked) > 0
    for r in tracked:  # the frames without embeddings still get global ids, distinct in a frame
        n = len(r["TRACK_IDS"])
        assert r["GLOBAL_IDS"].shape == (n,) and len(set(r["GLOBAL_IDS"].tolist())) == n and (r["GLOBAL_IDS"] > 0).all()
