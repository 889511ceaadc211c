"""Embeddings queued with their batch (``pipeline_models.gpu.reid_ahead``): the crop table the GPU builds from
the detector's rows is the host's (``crop_windows`` of ``kept_detections``, then ``crop_rows``), and a pipeline
that queues them ahead answers the embeddings it would have computed after the boxes, also when its guess of
the crops falls short."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tests.gpu.test_gpu_reid import BOXES, FIXTURE, MAX_ONE_MINUS_COS, cosines

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not FIXTURE.is_file(), reason=f"ReID test model {FIXTURE} absent"),
]
PADDING = np.array([7, 1, 1, 0, 0, 1, 1], np.int64)


def detector_rows(rng: np.random.Generator, frames: int, k: int, hw: list[tuple[int, int]]) -> np.ndarray:
    """``(frames, k, 6)`` rows as the detector leaves them: boxes (some over the edges, degenerate, NaN),
    descending scores, keep flags."""
    rows = np.zeros((frames, k, 6), np.float32)
    for i in range(frames):
        h, w = hw[i]
        corner = rng.uniform([-60, -60], [w, h], (k, 2))
        rows[i, :, :2] = corner
        rows[i, :, 2:4] = corner + rng.uniform([-5, -5], [300, 500], (k, 2))
        rows[i, :, 4] = np.sort(rng.uniform(0.1, 1.0, k))[::-1]
        rows[i, :, 5] = rng.uniform(size=k) < 0.7
    rows[0, :len(BOXES), :4] = BOXES  # the degenerate ones
    rows[0, :len(BOXES), 5] = 1
    return rows


def host_table(frames, rows, wanted, max_detections):
    from pipeline_models.gpu import crop_kernel
    from pipeline_models.gpu.detector import kept_detections
    from pipeline_models.gpu.reid import crop_windows

    chosen = [f for f, w in zip(frames, wanted) if w]
    boxes = [kept_detections(rows[i], max_detections)[0] for i in range(len(frames)) if wanted[i]]
    _, frame_of, windows = crop_windows(chosen, boxes)
    return crop_kernel.crop_rows(chosen, frame_of, windows)


@pytest.mark.parametrize("size", [8, 64, 400])
def test_the_gpu_crop_table_is_the_hosts_of_the_kept_detections(size):
    from pipeline_models.gpu.reid_ahead import crop_table_on_gpu

    rng = np.random.default_rng(size)
    hw = [(720, 1280), (480, 640), (1080, 1920), (37, 53)]
    frames = [torch.zeros((3, h, w), dtype=torch.uint8, device="cuda") for h, w in hw]
    rows = detector_rows(rng, len(frames), 60, hw)
    wanted = [True, False, True, True]
    sides = torch.tensor([[f.data_ptr(), *f.shape[1:]] if w else [0, 0, 0] for f, w in zip(frames, wanted)],
                         device="cuda")  # fmt: skip
    max_detections = 40  # below the kept rows of some frames
    got = crop_table_on_gpu(torch.from_numpy(rows).cuda(), sides, max_detections,
                            torch.from_numpy(PADDING).cuda(), size).cpu().numpy()  # fmt: skip
    want = host_table(frames, rows, wanted, max_detections)
    assert len(want) > 64 and got.shape == (size, 7)
    np.testing.assert_array_equal(got[: len(want)], want[:size])
    np.testing.assert_array_equal(got[len(want) :], np.broadcast_to(PADDING, got[len(want) :].shape))


@pytest.mark.parametrize("guess", ["enough", "short"])
def test_a_pipeline_embedding_ahead_answers_the_embeddings_of_its_boxes(guess):
    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.pipelined import Job, PipelinedDetector
    from pipeline_models.gpu.preprocess import decode_images
    from pipeline_models.gpu.reid import TorchEmbedder, launch_embeddings
    from pipeline_models.gpu.reid_ahead import AheadEmbedder
    from tests.gpu.helpers import server_frames

    torch.backends.cudnn.allow_tf32 = False
    detector = GraphedDetector(
        "yolox_tiny", 1, (256, 256), device="cuda", buckets=(1, 2, 4), conf_thresh=0.0, pre_nms_topk=64,
        max_detections=30,
    )
    embedder = TorchEmbedder(FIXTURE, "cuda", max_batch=256, half=False, compiled=False)
    ahead = AheadEmbedder(embedder, detector.max_detections)
    if guess == "enough":
        ahead.per_frame = detector.max_detections  # every batch's crops fit
    else:
        ahead.observe = lambda crops, frames: None  # a guess of 8 crops, always short: embedded after the boxes
    datas = server_frames()[:6]
    results, finished = {}, threading.Event()

    def done_for(k):
        def done(result):
            results[k] = result
            if len(results) == len(datas):
                finished.set()

        return done

    pipeline = PipelinedDetector(detector, (256, 256), legacy=True,
                                 embed=lambda frames, boxes: launch_embeddings(embedder, frames, boxes),
                                 embed_ahead=ahead)  # fmt: skip
    pipeline.submit([Job(data, done_for(k), embed=k != 1) for k, data in enumerate(datas)])
    assert finished.wait(60)
    stats = pipeline.take_stats()
    pipeline.close()
    assert stats.embed_calls > 0
    assert stats.embed_ahead == (stats.embed_calls if guess == "enough" else 0)
    assert len(results[1]) == 2  # job 1 did not ask
    frames = decode_images(datas, torch.device("cuda"))
    for k, result in results.items():
        if k == 1:
            continue
        boxes, _, got = result
        (want,) = launch_embeddings(embedder, [frames[k]], [boxes]).result()  # its own frame and boxes
        assert got.shape == want.shape and len(boxes) > 8
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = np.isfinite(want).all(axis=1)
        assert 1 - cosines(got[ok], want[ok]).min() < MAX_ONE_MINUS_COS
