"""Appearance-aided association on this CPU: identity figures with and without it, and its cost per frame.

``python -m bench.appearance [--frames 300] [--gap 20] [--model PATH]``. vtest.avi has no ground truth, so
the figures are against a *pseudo* ground truth: plain ByteTrack's tracks on the detector's detections
(SSDLite, the cpu profile). Each pseudo-ground-truth person is then hidden (its detection removed) for
``--gap`` frames in the middle of its life, a synthetic occlusion, and both trackers run on what is left:
IDF1 and ID switches (py-motmetrics, ``pipeline_tools.evaluate``) say how well each keeps a person's id
across the gap. On the unhidden detections plain ByteTrack reproduces the pseudo ground truth by
construction; the appearance tracker's figure there shows how far it departs from ByteTrack (not an error
measure). "fused cost only" is BoT-SORT's association without the re-find of lost tracks (``refind_thresh``
0). Costs: the tracker's update per frame, and reid's embedding per frame over every detection (what
the option embeds) against over the tracks only (ReID without it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline_client.sources import video_jpegs
from pipeline_models.reid.crops import crop_batch, valid_boxes
from pipeline_models.reid.embedder import Embedder
from pipeline_models.settings import AppearanceAssociation
from pipeline_models.tracking.byte_tracker import ByteTracker
from pipeline_models.tracking.matching import iou_distance
from pipeline_models.types import Detections
from pipeline_tools.evaluate import FrameBoxes, clear_and_identity
from pipeline_tools.local_pipeline import LocalPipeline

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "reid" / "osnet_x0_25_msmt17.onnx"
ON = AppearanceAssociation(appearance_association=True)
FUSED_ONLY = AppearanceAssociation(appearance_association=True, refind_thresh=0.0)


def embed(embedder: Embedder, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(n, D)`` unit embeddings of the boxes (NaN rows where a box shows no pixels)."""
    out = np.full((len(boxes), embedder.dim), np.nan, np.float32)
    valid = valid_boxes(boxes, frame.shape[:2])
    if valid.any():
        out[valid] = embedder.embed(crop_batch(frame, boxes[valid], embedder.input_hw, bgr=True))
    return out


def run(tracker: ByteTracker, dets: list[Detections], embs: list[np.ndarray] | None):
    """Per frame (1-based) the tracks as FrameBoxes, and the tracker's mean ms per update."""
    frames, spent = {}, 0.0
    for i, d in enumerate(dets):
        began = time.perf_counter()
        t = tracker.update(d, 1, None if embs is None else embs[i])
        spent += time.perf_counter() - began
        frames[i + 1] = FrameBoxes(t.ids.astype(np.int64), np.asarray(t.tlwh, np.float64))
    return frames, spent / len(dets) * 1e3


def occlude(truth: dict[int, FrameBoxes], dets: list[Detections], gap: int) -> tuple[list[np.ndarray], int]:
    """Which detections to keep: each pseudo-truth person's best-matching detection removed for ``gap``
    frames in the middle of its life (persons living at least ``3 * gap`` frames). Returns the masks and
    how many persons were hidden."""
    life: dict[int, list[int]] = {}
    for f, fb in truth.items():
        for pid in fb.ids.tolist():
            life.setdefault(pid, []).append(f)
    keep = [np.ones(len(d), bool) for d in dets]
    hidden = 0
    for pid, frames in life.items():
        if len(frames) < 3 * gap:
            continue
        hidden += 1
        mid = frames[len(frames) // 2]
        for f in range(mid - gap // 2, mid - gap // 2 + gap):
            fb, d = truth.get(f), dets[f - 1]
            if fb is None or pid not in fb.ids or not len(d):
                continue
            box = fb.xyxy[fb.ids.tolist().index(pid)]
            iou = 1 - iou_distance(box[None], d.xyxy)[0]
            if iou.max() >= 0.5:
                keep[f - 1][int(iou.argmax())] = False
    return keep, hidden


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="vtest.avi frames (default: %(default)s)")
    parser.add_argument("--gap", type=int, default=20, help="frames each person is hidden (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=FIXTURE, help="OSNet-style ONNX (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"ReID model missing: {args.model} (pass --model PATH)", file=sys.stderr)
        return 1
    cv2.setNumThreads(1)
    jpegs = video_jpegs(REPO / ".cache" / "data" / "vtest.avi", args.frames)
    local = LocalPipeline.from_profile("cpu")
    config = local.tracker_config
    dets = [local.detect([j])[0] for j in jpegs]
    embedder = Embedder(args.model, threads=1, max_batch=64)
    images = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]
    began = time.perf_counter()
    embs = [embed(embedder, img, d.xyxy) for img, d in zip(images, dets, strict=True)]
    embed_ms = (time.perf_counter() - began) / len(dets) * 1e3
    truth, plain_ms = run(ByteTracker(config), dets, None)
    n_dets = np.mean([len(d) for d in dets])
    n_tracks = np.mean([len(fb.ids) for fb in truth.values()])
    keep, hidden = occlude(truth, dets, args.gap)
    hidden_dets = [d[k] for d, k in zip(dets, keep, strict=True)]
    hidden_embs = [e[k] for e, k in zip(embs, keep, strict=True)]
    print(f"vtest.avi, {len(dets)} frames, this machine's CPU; {n_dets:.1f} detections and {n_tracks:.1f} "
          f"tracks per frame; {hidden} persons hidden for {args.gap} frames each")
    print(f"{'detections':12s} {'tracker':22s} {'IDF1':>6s} {'ID sw':>6s} {'ids':>5s} {'ms/frame':>9s}")
    for label, d, e in (("all", dets, embs), ("occluded", hidden_dets, hidden_embs)):
        for name, tracker, with_emb in (
            ("ByteTrack", ByteTracker(config), False),
            ("fused cost only", ByteTracker(config, FUSED_ONLY), True),
            ("appearance association", ByteTracker(config, ON), True),
        ):
            tracks, ms = run(tracker, d, e if with_emb else None)
            m = clear_and_identity(truth, tracks, 0.5)
            ids = len({int(i) for fb in tracks.values() for i in fb.ids})
            print(f"{label:12s} {name:22s} {m['idf1']:6.3f} {int(m['num_switches']):6d} {ids:5d} {ms:9.3f}")
    per_crop = embed_ms / max(n_dets, 1e-9)
    print(f"reid embedding (1 ONNX Runtime thread): {embed_ms:.1f} ms/frame over every detection "
          f"(the option on) vs about {per_crop * n_tracks:.1f} ms/frame over the tracks only (ReID without it); "
          f"{per_crop:.2f} ms per crop")
    print(f"plain ByteTrack update: {plain_ms:.3f} ms/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
