"""Graph-safe NMS and the fused detector against the CPU reference maths.

Runs on CUDA (graphs captured) under `make test-gpu`; the same tests run eagerly on a CPU-only torch.
"""

import numpy as np
import pytest
import torch

from pipeline_models.gpu.detector import GraphedDetector, kept_detections
from pipeline_models.gpu.nms import cluster_nms, finish_nms, suppression_matrix
from pipeline_models.gpu.postprocess import decode_candidates, yolox_grids
from pipeline_models.postprocess import nms as cpu_nms
from pipeline_models.postprocess import postprocess_yolox
from tests.gpu.helpers import assert_matching_detections, spread_checkpoint

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


def _greedy(boxes: np.ndarray, thresh: float) -> np.ndarray:
    """Textbook greedy NMS over boxes already sorted by descending score."""
    keep = []
    for j, box in enumerate(boxes):
        ok = True
        for i in keep:
            a = boxes[i]
            w = max(0.0, min(a[2], box[2]) - max(a[0], box[0]))
            h = max(0.0, min(a[3], box[3]) - max(a[1], box[1]))
            inter = w * h
            union = (a[2] - a[0]) * (a[3] - a[1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter
            if inter > thresh * union:
                ok = False
                break
        if ok:
            keep.append(j)
    return np.array(keep, dtype=np.int64)


def _clustered_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boxes in tight clusters, so that suppression chains are long."""
    centres = rng.uniform(50, 600, (max(n // 8, 1), 2))
    pick = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, (n, 2))
    size = rng.uniform(20, 60, (n, 2))
    return np.concatenate([pick - size / 2, pick + size / 2], 1).astype(np.float32)


@pytest.mark.parametrize("iterations", [1, 3, 50])
def test_cluster_nms_is_exactly_greedy_nms(iterations):
    rng = np.random.default_rng(7)
    batch, k = 4, 300
    boxes = np.stack([_clustered_boxes(rng, k) for _ in range(batch)])
    valid = rng.uniform(size=(batch, k)) > 0.1
    tb, tv = torch.from_numpy(boxes).to(DEVICE), torch.from_numpy(valid).to(DEVICE)
    over = suppression_matrix(tb, tv, 0.5)
    keep, settled = cluster_nms(over, tv, iterations)
    if not bool(settled):
        keep = finish_nms(over, keep, tv)
    for b in range(batch):
        idx = np.flatnonzero(valid[b])
        expected = idx[_greedy(boxes[b, idx], 0.5)]
        assert np.flatnonzero(keep[b].cpu().numpy()).tolist() == expected.tolist()
        # ... and the same as the CPU path's NMS (OpenCV), scores descending in index order.
        scores = np.linspace(1.0, 0.5, len(idx), dtype=np.float32)
        assert sorted(idx[cpu_nms(boxes[b, idx], scores, 0.5)].tolist()) == expected.tolist()
    assert len(expected) < 0.7 * len(idx)  # the clusters really suppress


def _chain():
    """A chain: each box overlaps the next one only, so greedy keeps every other box and needs many steps."""
    xs = np.arange(40, dtype=np.float32) * 5
    boxes = np.stack([xs, np.zeros(40), xs + 10, np.full(40, 10)], 1).astype(np.float32)[None]
    tb = torch.from_numpy(boxes).to(DEVICE)
    valid = torch.ones(1, 40, dtype=torch.bool, device=DEVICE)
    return tb, valid, suppression_matrix(tb, valid, 0.3)


def test_cluster_nms_reports_an_unsettled_batch():
    _, valid, over = _chain()
    keep, settled = cluster_nms(over, valid, 2)
    assert not bool(settled)
    keep = finish_nms(over, keep, valid)
    assert np.flatnonzero(keep[0].cpu().numpy()).tolist() == list(range(0, 40, 2))


def test_collect_finishes_an_unsettled_batch_outside_the_graph():
    from pipeline_models.gpu.detector import LaunchedBatch

    boxes, valid, over = _chain()
    keep, settled = cluster_nms(over, valid, 2)
    scores = torch.linspace(1.0, 0.5, 40, device=DEVICE)[None, :, None]
    rows = torch.cat([boxes, scores, keep[..., None].float()], -1).cpu()
    launched = LaunchedBatch(rows, settled.cpu(), None, (over, keep, valid))  # as if the copy had finished
    kept_boxes, kept_scores = kept_detections(GraphedDetector.collect(launched)[0])
    np.testing.assert_array_equal(kept_boxes, boxes[0, ::2].cpu().numpy())
    np.testing.assert_allclose(kept_scores, scores[0, ::2, 0].cpu().numpy())


def _assert_same_detections(boxes, scores, ref) -> None:
    """Equal detections up to the order of tied scores."""
    assert len(boxes) == len(ref) > 0
    mine = np.lexsort((boxes[:, 1], boxes[:, 0], -scores))
    theirs = np.lexsort((ref.xyxy[:, 1], ref.xyxy[:, 0], -ref.scores))
    np.testing.assert_allclose(scores[mine], ref.scores[theirs], rtol=1e-5)
    np.testing.assert_allclose(boxes[mine], ref.xyxy[theirs], atol=1e-2)


def _raw_head(rng: np.random.Generator, batch: int, classes: int = 1) -> np.ndarray:
    raw = np.zeros((batch, 8400, 5 + classes), np.float32)
    raw[..., :2] = rng.uniform(0, 1, (batch, 8400, 2))
    raw[..., 2:4] = rng.uniform(-1, 2, (batch, 8400, 2))
    raw[..., 4:] = rng.uniform(0, 0.4, (batch, 8400, 1 + classes))
    for b in range(batch):
        raw[b, rng.choice(8400, 80, replace=False), 4] = rng.uniform(0.6, 1.0, 80)
    raw[..., 5] = np.maximum(raw[..., 5], 0.9)
    return raw


@pytest.mark.parametrize("classes", [1, 2])
def test_candidates_and_nms_match_cpu_postprocess(classes):
    rng = np.random.default_rng(3)
    raw = _raw_head(rng, 3, classes)
    meta = np.array([[1080, 1920, 1 / 3], [480, 640, 1.0], [576, 768, 640 / 768]], np.float32)
    boxes, scores, _, valid = decode_candidates(
        torch.from_numpy(raw).to(DEVICE), yolox_grids((640, 640), DEVICE), 0.3, 2048, keep_class=0
    )
    over = suppression_matrix(boxes, valid, 0.7)
    keep = finish_nms(over, *cluster_nms(over, valid, 4)[:1], valid)
    from pipeline_models.gpu.postprocess import to_original_pixels

    out = to_original_pixels(boxes, torch.from_numpy(meta).to(DEVICE)).cpu().numpy()
    for i in range(3):
        ref = postprocess_yolox(raw[i], meta[i], conf_thresh=0.3, nms_thresh=0.7)
        mask = keep[i].cpu().numpy()
        assert len(ref) > 10
        _assert_same_detections(out[i][mask], scores[i].cpu().numpy()[mask], ref)


def test_graphed_detector_matches_cpu_postprocess_of_its_own_head(tmp_path):
    from pipeline_models.gpu.detector import load_yolox

    ckpt = spread_checkpoint(tmp_path / "spread.pth")
    images = torch.randn(3, 3, 320, 320, device=DEVICE).contiguous(memory_format=torch.channels_last)
    meta = torch.tensor([[640, 640, 0.5], [320, 480, 320 / 480], [200, 300, 320 / 300]])
    with torch.inference_mode():
        raw = load_yolox("yolox_tiny", 1, DEVICE, ckpt)(images.half()).float().cpu().numpy()
    scores = np.sort(raw[..., 4] * raw[..., 5], axis=1)
    conf = float(scores[:, -200].max())  # at most 200 candidates (< pre_nms_topk) in every image
    detector = GraphedDetector(
        "yolox_tiny", 1, (320, 320), DEVICE, buckets=(1, 4), conf_thresh=conf, nms_thresh=0.6,
        checkpoint=ckpt, pre_nms_topk=400, nms_iterations=2, cuda_graphs=CUDA,
    )
    got = detector.detect(images, meta)
    again = detector.detect(images[:1], meta[:1])  # a smaller bucket, the same first image
    for i, (boxes, det_scores) in enumerate(got):
        # The graph's FP16 convolutions may pick other kernels than the eager run: match box by box.
        ref = postprocess_yolox(raw[i], meta[i].numpy(), conf, 0.6, input_hw=(320, 320))
        assert 0 < len(ref) <= 200 and abs(len(boxes) - len(ref)) <= 0.02 * len(ref)
        assert_matching_detections(boxes, det_scores, ref.xyxy, ref.scores)
    # Another bucket runs other FP16 kernels: the same detections up to rounding.
    assert abs(len(again[0][1]) - len(got[0][1])) <= 0.02 * len(got[0][1])
    np.testing.assert_allclose(again[0][1][:5], got[0][1][:5], rtol=2e-2)


def test_a_batch_collected_after_a_later_launch_keeps_its_own_nms_state(tmp_path):
    """Launch-ahead: batch B replays the same graph before A is collected; A's unsettled NMS must still be
    finished from A's state, not from the graph outputs B overwrote."""
    ckpt = spread_checkpoint(tmp_path / "spread.pth")
    detector = GraphedDetector(
        "yolox_tiny", 1, (320, 320), DEVICE, buckets=(2,), conf_thresh=0.0, nms_thresh=0.05,
        checkpoint=ckpt, pre_nms_topk=400, nms_iterations=1, cuda_graphs=CUDA,
    )
    gen = torch.Generator().manual_seed(5)
    a, b = (torch.randn(2, 3, 320, 320, generator=gen).to(DEVICE) for _ in range(2))
    meta = torch.tensor([[320.0, 320.0, 1.0]] * 2)
    expected = [detector.detect(a, meta), detector.detect(b, meta)]
    first, second = detector.launch(a, meta), detector.launch(b, meta)
    got = [[kept_detections(row) for row in detector.collect(batch)] for batch in (first, second)]
    assert not bool(first.settled)  # one NMS step does not settle these overlapping candidates
    for mine, ref in zip(got, expected):
        for (boxes, scores), (ref_boxes, ref_scores) in zip(mine, ref):
            np.testing.assert_array_equal(boxes, ref_boxes)
            np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.skipif(not CUDA, reason="torch.compile is the GPU path (make test-gpu)")
def test_the_compiled_detector_finds_what_the_uncompiled_one_finds(tmp_path):
    ckpt = spread_checkpoint(tmp_path / "spread.pth")
    images = torch.randn(5, 3, 320, 320, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    meta = torch.tensor([[320.0, 320.0, 1.0]] * 5)
    settings = dict(  # about 180 detections an image, from fewer candidates than pre_nms_topk
        arch="yolox_tiny", num_classes=1, input_hw=(320, 320), device=DEVICE, buckets=(1, 2, 8),
        checkpoint=ckpt, conf_thresh=0.005, nms_thresh=0.6, pre_nms_topk=400, nms_iterations=2,
    )
    plain, compiled = GraphedDetector(**settings), GraphedDetector(**settings, compiled=True)
    # Batch 1 has its own compiled graph; 2 and 5 run the one compiled for every larger bucket.
    for n in (1, 2, 5):
        for (boxes, scores), (ref_boxes, ref_scores) in zip(
            compiled.detect(images[:n], meta[:n]), plain.detect(images[:n], meta[:n])
        ):
            assert len(ref_boxes) > 100
            assert_matching_detections(boxes, scores, ref_boxes, ref_scores)
