"""Shared pieces of the GPU tests."""

import os
from pathlib import Path

import numpy as np
import torch

#: The gpu profile as the server tests render it: a small YOLOX (random weights, buckets up to 8).
SERVER_SETTINGS = {
    "yolox_arch": "yolox_tiny",
    "max_batch_size": "8",
    "batch_buckets": "1,2,4,8",
    "preferred_batch_sizes": "8",
    "conf_thresh": "0.02",
    "track_thresh": "0.05",
    "pre_nms_topk": "30",
    # GPU_TEST_COMPILE=false serves YOLOX uncompiled (no 1-3 min torch.compile at each load);
    # test_fused_detector checks that compiled and uncompiled detections agree.
    "compile_detector": os.environ.get("GPU_TEST_COMPILE", "true"),
    "reid_compile": os.environ.get("GPU_TEST_COMPILE", "true"),  # used with reid_model only
}


def server_frames() -> list[bytes]:
    """Six 720p JPEG frames from ``$GPU_FRAMES`` (default out/frames), as the server tests send them."""
    from bench.gpu import make_frames

    return make_frames(Path(os.environ.get("GPU_FRAMES", "out/frames")), 6, hw=(720, 1280))


def spread_checkpoint(path) -> str:
    """A YOLOX-tiny checkpoint whose scores differ between anchors (random weights score them all alike):
    Kaiming convs, and score heads scaled to the features they see."""
    from pipeline_models.gpu.yolox import build_yolox

    torch.manual_seed(3)
    model = build_yolox("yolox_tiny", 1)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    heads = (*model.head.obj_preds, *model.head.cls_preds)
    seen = {}
    hooks = [h.register_forward_pre_hook(lambda m, x: seen.__setitem__(m, float(x[0].std()))) for h in heads]
    with torch.no_grad():
        model(torch.randn(1, 3, 320, 320))
        for conv in heads:
            conv.weight.normal_(0, 2.0 / (seen[conv] * conv.in_channels**0.5))
    for hook in hooks:
        hook.remove()
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def assert_matching_detections(boxes, scores, ref_boxes, ref_scores) -> None:
    """The same detections up to FP16 rounding: each reference box has one within 1 px, with its score.

    (Another batch bucket or the graph may pick other FP16 kernels than the reference run.)
    """
    assert len(ref_boxes) > 0 and abs(len(boxes) - len(ref_boxes)) <= 0.02 * len(ref_boxes)
    dist = np.abs(ref_boxes[:, None, :] - boxes[None, :, :]).max(axis=2)  # px, worst coordinate
    best = dist.argmin(axis=1)
    matched = dist.min(axis=1) < 1.0
    assert matched.mean() > 0.97
    np.testing.assert_allclose(scores[best[matched]], ref_scores[matched], rtol=2e-2)
