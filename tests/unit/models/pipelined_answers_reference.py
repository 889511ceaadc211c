"""Runs ``PipelinedDetector``'s answering (detections + embeddings, and their faults) on the CPU in the export
environment (torch CPU, onnx, onnx2torch): ``python -m tests.unit.models.pipelined_answers_reference OUT FIXTURE``
writes ``OUT/answers.json``; ``test_pipelined_answers`` asserts on it. The GPU half runs in tests/gpu.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import types
from pathlib import Path

import numpy as np

ROWS = np.zeros((3, 6, 6), np.float32)  # three images' (K, 6) detector rows: x1, y1, x2, y2, score, kept
ROWS[:, :2] = [[10, 10, 50, 90, 0.9, 1], [60, 20, 110, 100, 0.8, 1]]
ROWS[2, 2] = [0, 0, 0, 0, 0.7, 1]  # image 2 also has a box that shows no pixels


def _stub_torchvision() -> None:
    """preprocess imports torchvision's decoders, absent here; the answering does not use them."""
    for name in ("torchvision", "torchvision.io", "torchvision.ops"):
        sys.modules.setdefault(name, types.ModuleType(name))
    for attr in ("ImageReadMode", "decode_image", "decode_jpeg"):
        setattr(sys.modules["torchvision.io"], attr, None)
    for attr in ("nms", "batched_nms", "roi_align", "box_convert"):
        setattr(sys.modules["torchvision.ops"], attr, None)


def _outcome(result) -> dict:
    if isinstance(result, BaseException):
        return {"error": f"{type(result).__name__}: {result}"}
    return {"parts": len(result), "boxes": result[0].tolist(), "embeddings": result[2].tolist() if len(result) == 3 else None}


def main(out: Path, fixture: Path) -> None:
    _stub_torchvision()
    import torch

    from pipeline_models.gpu import pipelined
    from pipeline_models.gpu.reid import TorchEmbedder, embed_frames, launch_embeddings

    embedder = TorchEmbedder(fixture, "cpu", half=False, compiled=False)
    frames = [torch.randint(0, 256, (3, 120, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
              for i in range(3)]

    stats: list[pipelined.StageStats] = []  # each run's

    def run(embed, asks=(False, True, True), rows=ROWS) -> list[dict]:
        """One collected batch of three images through ``_answers_of`` and ``_answer``."""
        pipeline = object.__new__(pipelined.PipelinedDetector)
        pipeline.detector = types.SimpleNamespace(max_detections=8)
        pipeline.embed, pipeline.embed_ahead, pipeline._embed_stream = embed, None, None
        pipeline._stats, pipeline._stats_lock = pipelined.StageStats(), threading.Lock()
        got: dict[int, object] = {}
        jobs = [pipelined.Job(b"", lambda r, k=k: got.__setitem__(k, r), embed=a) for k, a in enumerate(asks)]
        launched = types.SimpleNamespace(jobs=jobs, frames=frames if embed is not None else None, ahead=None)
        pipeline._answer(pipeline._answers_of(launched, rows))
        stats.append(pipeline.take_stats())
        return [_outcome(got[k]) for k in range(len(jobs))]

    def broken(frames, boxes):
        raise RuntimeError("embedding broke")

    def short(frames, boxes):
        return types.SimpleNamespace(result=lambda: [np.zeros((len(boxes[0]), 512), np.float32)])

    def fails_late(frames, boxes):
        return types.SimpleNamespace(result=lambda: (_ for _ in ()).throw(RuntimeError("copy broke")))

    real = lambda fs, bs: launch_embeddings(embedder, fs, bs)
    direct = embed_frames(embedder, frames[1:], [ROWS[1, :2, :4], ROWS[2, :3, :4]])
    report = {
        "real": run(real),
        "real_stats": {**dataclasses.asdict(stats[-1]), "summary": stats[-1].summary()},
        "direct": [d.tolist() for d in direct],
        "launch_fails": run(broken),
        "result_fails": run(fails_late),
        "short": run(short),
        "no_embed": run(None),
        "batch_failed": run(real, rows=RuntimeError("detect broke")),
        "none_ask": run(broken, asks=(False, False, False)),
    }
    (out / "answers.json").write_text(json.dumps(report, allow_nan=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
