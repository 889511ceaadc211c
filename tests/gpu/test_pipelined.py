"""PipelinedDetector: every job answered once, equal to the fused detector run directly (CUDA only)."""

import threading
import types

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _jpegs(n):
    from torchvision.io import encode_jpeg

    rng = torch.Generator().manual_seed(4)
    out = []
    for _ in range(n):
        small = torch.rand(1, 3, 60, 80, generator=rng) * 255
        image = torch.nn.functional.interpolate(small, size=(480, 640), mode="bilinear")[0]
        out.append(bytes(encode_jpeg(image.to(torch.uint8), quality=90).numpy()))
    return out


@pytest.mark.parametrize("overlap, launch_ahead_ms", [(True, 0.0), (True, 2.0), (False, 0.0)])
def test_jobs_are_answered_once_in_order_and_equal_direct_detection(overlap, launch_ahead_ms):
    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.pipelined import Job, PipelinedDetector
    from pipeline_models.gpu.preprocess import decode_images, letterbox_batch

    # Random weights score every anchor alike: at 256x256 all 1344 anchors are candidates and none
    # suppresses another, so every batching gives the same set of boxes whatever the tie order.
    detector = GraphedDetector(
        "yolox_tiny", 1, (256, 256), device="cuda", buckets=(1, 2, 4), conf_thresh=0.0, pre_nms_topk=2048
    )
    datas = _jpegs(7)
    images, meta = letterbox_batch(decode_images(datas, torch.device("cuda")), (256, 256))
    expected = [r for i in range(0, 7, 4) for r in detector.detect(images[i : i + 4], meta[i : i + 4])]

    results, answered, lock, finished = {}, [], threading.Lock(), threading.Event()
    payloads = datas[:3] + [b"\xff\xd8 corrupt"] + datas[3:]

    def done_for(k):
        def done(result):
            with lock:
                results.setdefault(k, []).append(result)
                answered.append(k)
                if len(results) == len(payloads):
                    finished.set()

        return done

    pipeline = PipelinedDetector(detector, (256, 256), legacy=True, overlap=overlap, launch_ahead_ms=launch_ahead_ms)
    jobs = [Job(data, done_for(k)) for k, data in enumerate(payloads)]
    for chunk in (jobs[:2], jobs[2:5], jobs[5:]):  # as three executes would
        pipeline.submit(chunk)
    assert finished.wait(60)
    stats = pipeline.take_stats()
    pipeline.close()
    assert stats.images == 7 and 1 <= stats.batches <= 7 and stats.detect_ms > 0 and 0 < stats.graph_ms < stats.gpu_ms
    assert all(len(answers) == 1 for answers in results.values())  # each job answered exactly once
    # In order (a camera's frames must reach the tracker in order); the corrupt frame 3 is refused by the
    # decode thread, before its batch.
    assert [k for k in answered if k != 3] == [k for k in range(len(payloads)) if k != 3]
    assert isinstance(results[3][0], ValueError)
    got = [results[k][0] for k in range(len(payloads)) if k != 3]
    for (boxes, scores), (ref_boxes, ref_scores) in zip(got, expected):
        assert len(boxes) == len(ref_boxes) == min(1344, detector.max_detections)
        order, ref_order = np.lexsort(boxes.T[::-1]), np.lexsort(ref_boxes.T[::-1])
        np.testing.assert_allclose(boxes[order], ref_boxes[ref_order], atol=0.5)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-2)


def test_under_a_steady_stream_batches_are_launched_ahead_and_answered_in_order():
    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.pipelined import Job, PipelinedDetector

    detector = GraphedDetector(
        "yolox_tiny", 1, (256, 256), device="cuda", buckets=(1, 2, 4), conf_thresh=0.0, pre_nms_topk=2048
    )
    datas = _jpegs(4) * 12
    answered, finished = [], threading.Event()

    def done_for(k):
        def done(result):
            answered.append((k, result))
            if len(answered) == len(datas):
                finished.set()

        return done

    # A margin far above the graph's time: once a bucket's time is known, every next batch is launched
    # as soon as its frames are decoded, while the one before still runs.
    pipeline = PipelinedDetector(detector, (256, 256), legacy=True, launch_ahead_ms=1000.0)
    pipeline.submit([Job(data, done_for(k)) for k, data in enumerate(datas)])
    assert finished.wait(60)
    stats = pipeline.take_stats()
    pipeline.close()
    assert stats.images == len(datas) and stats.ahead > 0
    assert [k for k, _ in answered] == list(range(len(datas)))
    for k, (boxes, scores) in answered:  # the same frame gives the same detections in every batch
        ref_boxes, _ = answered[k % 4][1]
        assert len(boxes) == len(ref_boxes) == min(1344, detector.max_detections)
        order, ref_order = np.lexsort(boxes.T[::-1]), np.lexsort(ref_boxes.T[::-1])
        np.testing.assert_allclose(boxes[order], ref_boxes[ref_order], atol=0.5)


@pytest.mark.parametrize("overlap", [True, False])
def test_embed_gets_the_decoded_frames_and_boxes_of_the_jobs_that_ask_and_a_failure_fails_those_only(overlap):
    from pipeline_models.gpu.detector import GraphedDetector
    from pipeline_models.gpu.pipelined import Job, PipelinedDetector
    from pipeline_models.gpu.preprocess import decode_images

    detector = GraphedDetector(
        "yolox_tiny", 1, (256, 256), device="cuda", buckets=(1, 2, 4), conf_thresh=0.0, pre_nms_topk=64
    )
    datas = _jpegs(6)
    calls, results, finished = [], {}, threading.Event()
    reference = decode_images(datas, torch.device("cuda"))

    def embed(frames, boxes):
        calls.append([f.shape for f in frames])
        assert torch.cuda.current_stream().priority < 0 or not overlap  # the high-priority embed stream
        if any(int(f.float().mean()) == int(reference[4].float().mean()) for f in frames):
            raise RuntimeError("embedding broke")
        for frame in frames:
            assert frame.is_cuda and frame.dtype == torch.uint8 and frame.shape == (3, 480, 640)
        rows = [np.full((len(b), 2), float(frame.float().mean()), np.float32) for frame, b in zip(frames, boxes)]
        if any(int(f.float().mean()) == int(reference[2].float().mean()) for f in frames):
            rows = rows[1:]  # one frame's embeddings short: that batch's asking jobs fail, found on waiting
        return types.SimpleNamespace(result=lambda: rows)

    def done_for(k):
        def done(result):
            results[k] = result
            if len(results) == len(datas):
                finished.set()

        return done

    pipeline = PipelinedDetector(detector, (256, 256), legacy=True, overlap=overlap, embed=embed)
    # Job 1 does not ask (the detect ensemble's); job 4's batch fails its embedding.
    pipeline.submit([Job(data, done_for(k), embed=k != 1) for k, data in enumerate(datas)])
    assert finished.wait(60)
    stats = pipeline.take_stats()
    pipeline.close()
    assert sum(len(c) for c in calls) == 5  # each asking job's frame once, job 1's never
    assert stats.crops > 0 and stats.embed_ms > 0 and 0 < stats.embed_cpu_ms <= stats.embed_ms * 1.01 + 0.05  # two clocks: a few us apart
    assert len(results[1]) == 2  # boxes and scores only
    for k, result in results.items():
        if k == 1:
            continue
        if isinstance(result, BaseException):
            assert "embedding broke" in str(result) or "embeddings for" in str(result)
            continue
        boxes, _, embeddings = result
        assert embeddings.shape == (len(boxes), 2)
        np.testing.assert_allclose(embeddings, float(reference[k].float().mean()), rtol=1e-6)  # its own frame
    assert isinstance(results[4], RuntimeError)
    assert isinstance(results[2], RuntimeError)  # its batch came back one frame short (or also had job 4)
