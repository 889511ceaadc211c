"""MOTA, IDF1 and HOTA of a MOTChallenge tracks file against its ground truth; a cross-camera figure.

Command line: ``pipeline-evaluate --gt GT.txt --tracks TRACKS.txt [--iou 0.5] [--json]``, or
``pipeline-evaluate --cross-camera --gt A.txt B.txt --tracks A.jsonl B.jsonl`` (needs the ``eval`` extra).

Ground truth ``frame,id,x,y,w,h,conf,...``, filtered as TrackEval's MotChallenge2DBox does: a row whose
conf (as an integer) is 0 is not evaluated. A file with exactly 9 columns is MOT16/17/20 (``conf, class,
visibility``): only class 1 (pedestrian) is evaluated; a track box matched (IoU >= 0.5, one-to-one per
frame, against every ground-truth row) to a distractor (2 person on vehicle, 7 static person, 8 distractor,
12 reflection) is dropped, not counted as a false positive; other classes (1 to 12) are ignored;
visibility is not used. Any other column count (MOT15: 10, with world coordinates) has no classes.
Tracks ``frame,id,x,y,w,h,score,...``: every row counts, whatever its score. MOTA, IDF1, ID switches, FP
and FN come from py-motmetrics (a ground-truth and a track box can match when IoU >= ``--iou``); HOTA,
DetA, AssA and LocA from ``pipeline_tools.hota``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline_config.cli_help import DefaultsFormatter
from pipeline_tools import cross_camera
from pipeline_tools.hota import HotaFrame, box_iou, hota, linear_assignment
from pipeline_tools.mot_io import MotFormatError, integer_field, parse_line

DEFAULT_IOU = 0.5
PEDESTRIAN = 1
DISTRACTORS = frozenset({2, 7, 8, 12})
VALID_CLASSES = frozenset(range(1, 13))
DISTRACTOR_IOU = 0.5
MOT16_COLUMNS = 9


class EvaluationInputError(ValueError):
    """An input file that cannot be evaluated (empty, nothing left to evaluate); the message names it."""


@dataclass(frozen=True)
class FrameBoxes:
    """One frame of one file: ids ``(n,)`` int64, xywh boxes ``(n, 4)`` float64."""

    ids: npt.NDArray[np.int64]
    xywh: npt.NDArray[np.float64]

    @property
    def xyxy(self) -> npt.NDArray[np.float64]:
        return _xyxy(self.xywh)


EMPTY = FrameBoxes(np.empty(0, np.int64), np.empty((0, 4)))
Frames = dict[int, FrameBoxes]


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth to evaluate; for files with classes, every row per frame (for distractor matching)."""

    frames: Frames
    all_rows: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]
    """frame -> (xywh of every row, whether each is a distractor); empty without classes"""
    ignored: int


def _read_rows(path: str | Path, allow_empty: bool = False) -> list[tuple[int, int, list[float], list[str]]]:
    """``(line_no, frame, [id, x, y, w, h, conf], fields)`` per non-blank line; raises on a malformed one
    (and on an empty file unless ``allow_empty``)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            frame, (*_, conf) = parse_line(path, line_no, line)  # validates frame, box and score
            fields = [f.strip() for f in line.split(",")]
            x, y, w, h = (float(v) for v in fields[2:6])  # as written (not x2 - x1)
            ident = float(integer_field(path, line_no, fields[1], "id"))
            rows.append((line_no, frame, [ident, x, y, w, h, conf], fields))
    if not rows and not allow_empty:
        raise EvaluationInputError(f"{path}: no rows (an empty file)")
    return rows


def _group(path: str | Path, rows: list[tuple[int, int, list[float]]]) -> Frames:
    """Per frame ids and xywh boxes; an id twice in one frame is an error."""
    per_frame: dict[int, list[list[float]]] = {}
    seen: set[tuple[int, int]] = set()
    for line_no, frame, values in rows:
        key = (frame, int(values[0]))
        if key in seen:
            raise MotFormatError(path, line_no, f"id {key[1]} appears twice in frame {frame}")
        seen.add(key)
        per_frame.setdefault(frame, []).append(values)
    return {
        frame: FrameBoxes(np.array([v[0] for v in vals], np.int64), np.array([v[1:5] for v in vals]))
        for frame, vals in per_frame.items()
    }


def read_tracks(path: str | Path) -> Frames:
    """A MOT tracks file ``frame,id,x,y,w,h,score,...`` per frame (every row kept; an empty file is a
    tracker that found nobody: every ground-truth box a miss)."""
    return _group(path, [(n, frame, v) for n, frame, v, _ in _read_rows(path, allow_empty=True)])


def read_ground_truth(path: str | Path) -> GroundTruth:
    """A MOT ground-truth file, filtered by the rules in this module's docstring."""
    rows = _read_rows(path)
    columns = len(rows[0][3])
    keep, all_rows, ignored = [], {}, 0
    for line_no, frame, values, fields in rows:
        if len(fields) != columns:
            raise MotFormatError(path, line_no, f"{len(fields)} columns, the first row has {columns}")
        cls = PEDESTRIAN
        if columns == MOT16_COLUMNS:
            try:
                cls_value = float(fields[7])
            except ValueError:
                cls_value = math.nan
            if not cls_value.is_integer() or int(cls_value) not in VALID_CLASSES:
                raise MotFormatError(path, line_no, f"class {fields[7]!r} is not an integer from 1 to 12")
            cls = int(cls_value)
            all_rows.setdefault(frame, []).append((values[1:5], cls in DISTRACTORS))
        if cls == PEDESTRIAN and int(values[5]) != 0:
            keep.append((line_no, frame, values))
        else:
            ignored += 1
    if not keep:
        raise EvaluationInputError(f"{path}: no ground truth left to evaluate ({ignored} rows ignored)")
    matching = {
        frame: (np.array([b for b, _ in r], np.float64), np.array([d for _, d in r], bool))
        for frame, r in all_rows.items()
    }
    return GroundTruth(_group(path, keep), matching, ignored)


def drop_distractor_matches(
    tracks: Frames, all_rows: Mapping[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]
) -> tuple[Frames, int]:
    """Remove the track boxes that a distractor wins, as TrackEval does.

    Per frame, track boxes are matched one-to-one (Hungarian on IoU, pairs below 0.5 excluded) to every
    ground-truth row of the frame, ignored ones included; a track box matched to a distractor is removed.
    """
    eps = np.finfo(float).eps
    out, dropped = dict(tracks), 0
    for frame, (boxes, is_distractor) in all_rows.items():
        track = tracks.get(frame)
        if track is None or not len(track.ids) or not is_distractor.any():
            continue
        iou = box_iou(_xyxy(boxes), track.xyxy)
        iou[iou < DISTRACTOR_IOU - eps] = 0
        rows, cols = linear_assignment(-iou)
        matched = iou[rows, cols] > eps
        drop = cols[matched & is_distractor[rows]]
        if len(drop):
            keep = np.setdiff1d(np.arange(len(track.ids)), drop)
            out[frame] = FrameBoxes(track.ids[keep], track.xywh[keep])
            dropped += len(drop)
    return out, dropped


def _xyxy(xywh: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


@dataclass(frozen=True)
class Evaluation:
    """The figures of one sequence (rates in [0, 1]; MOTA may be negative)."""

    mota: float
    idf1: float
    hota: float
    deta: float
    assa: float
    loca: float
    id_switches: int
    false_positives: int
    false_negatives: int
    gt_boxes: int
    track_boxes: int
    frames: int
    iou: float
    ignored_gt_rows: int = 0
    dropped_track_boxes: int = 0


def clear_and_identity(gt: Frames, tracks: Frames, iou: float) -> dict[str, float]:
    """MOTA, IDF1, switches, FP and FN from py-motmetrics (every frame of either file, in order)."""
    import motmetrics as mm  # the eval extra

    acc = mm.MOTAccumulator(auto_id=False)
    for frame in sorted(set(gt) | set(tracks)):
        g, t = gt.get(frame, EMPTY), tracks.get(frame, EMPTY)
        acc.update(g.ids, t.ids, mm.distances.iou_matrix(g.xywh, t.xywh, max_iou=1.0 - iou), frameid=frame)
    names = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
             "num_predictions", "num_frames"]
    return mm.metrics.create().compute(acc, metrics=names, return_dataframe=False)


def evaluate(gt: GroundTruth, tracks: Frames, iou: float = DEFAULT_IOU) -> Evaluation:
    """Every figure of one sequence; distractor matches are dropped from ``tracks`` first."""
    tracks, dropped = drop_distractor_matches(tracks, gt.all_rows)
    m = clear_and_identity(gt.frames, tracks, iou)
    frames = sorted(set(gt.frames) | set(tracks))
    hota_frames = []
    for frame in frames:
        g, t = gt.frames.get(frame, EMPTY), tracks.get(frame, EMPTY)
        hota_frames.append(HotaFrame(g.ids, t.ids, box_iou(g.xyxy, t.xyxy)))
    h = hota(hota_frames)
    return Evaluation(
        mota=float(m["mota"]), idf1=float(m["idf1"]), hota=h.hota, deta=h.deta, assa=h.assa, loca=h.loca,
        id_switches=int(m["num_switches"]), false_positives=int(m["num_false_positives"]),
        false_negatives=int(m["num_misses"]), gt_boxes=int(m["num_objects"]),
        track_boxes=int(m["num_predictions"]), frames=len(frames), iou=iou,
        ignored_gt_rows=gt.ignored, dropped_track_boxes=dropped,
    )


def evaluate_files(gt_path: str | Path, tracks_path: str | Path, iou: float = DEFAULT_IOU) -> Evaluation:
    """:func:`evaluate` on two MOT files."""
    return evaluate(read_ground_truth(gt_path), read_tracks(tracks_path), iou)


def format_evaluation(e: Evaluation) -> str:
    """The human-readable summary ``pipeline-evaluate`` prints."""
    return (
        f"MOTA {100 * e.mota:.2f}  IDF1 {100 * e.idf1:.2f}  HOTA {100 * e.hota:.2f} "
        f"(DetA {100 * e.deta:.2f}, AssA {100 * e.assa:.2f}, LocA {100 * e.loca:.2f})\n"
        f"ID switches {e.id_switches}  FP {e.false_positives}  FN {e.false_negatives}  "
        f"GT boxes {e.gt_boxes}  track boxes {e.track_boxes}  frames {e.frames}  IoU >= {e.iou:g}\n"
        f"ignored GT rows {e.ignored_gt_rows}  track boxes on distractors {e.dropped_track_boxes}\n"
    )


def truth_by_person(gt: GroundTruth) -> cross_camera.CameraTruth:
    """Ground truth as ``frame -> {person id: xyxy}`` for :func:`cross_camera.cross_camera_consistency`."""
    return {
        frame: {int(i): tuple(b) for i, b in zip(boxes.ids.tolist(), boxes.xyxy.tolist())}
        for frame, boxes in gt.frames.items()
    }


def _iou_arg(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"IoU threshold must be in (0, 1], got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """The ``pipeline-evaluate`` console script; returns the exit status (2 for bad input)."""
    parser = argparse.ArgumentParser(prog="pipeline-evaluate", description=__doc__,
                                     formatter_class=DefaultsFormatter)
    parser.add_argument("--gt", nargs="+", required=True, metavar="GT.txt",
                        help="MOT ground truth (two with --cross-camera: camera A, camera B)")
    parser.add_argument("--tracks", nargs="+", required=True, metavar="TRACKS",
                        help="MOT tracks file; with --cross-camera two JSON Lines files (camera A, camera B)")
    parser.add_argument("--iou", type=_iou_arg, default=DEFAULT_IOU,
                        help="IoU a match needs (MOTA, IDF1, cross-camera); HOTA averages over 0.05..0.95")
    parser.add_argument("--cross-camera", action="store_true",
                        help="fraction of co-visible persons whose two tracks share a global id")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    count = 2 if args.cross_camera else 1
    if len(args.gt) != count or len(args.tracks) != count:
        parser.error(f"--gt and --tracks take {count} file(s) each"
                     + (" with --cross-camera" if args.cross_camera else ""))
    try:
        if args.cross_camera:
            truth_a, truth_b = (truth_by_person(read_ground_truth(p)) for p in args.gt)
            tracks_a, tracks_b = (cross_camera.read_camera_jsonl(p) for p in args.tracks)
            result = cross_camera.cross_camera_consistency(truth_a, tracks_a, truth_b, tracks_b, args.iou)
            summary, text = result.as_dict(), cross_camera.format_result(result)
        else:
            evaluation = evaluate_files(args.gt[0], args.tracks[0], args.iou)
            summary, text = asdict(evaluation), format_evaluation(evaluation)
    except (OSError, MotFormatError, EvaluationInputError, cross_camera.JsonlFormatError) as exc:
        print(f"pipeline-evaluate: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        print(f"pipeline-evaluate: error: {exc}: install the eval extra ('.[eval]')", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(summary) + "\n" if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
