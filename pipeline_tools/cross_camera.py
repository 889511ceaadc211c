"""Cross-camera identity: do two cameras with overlapping views give a person the same global id?

A person is *co-visible* in a frame when both cameras' ground truth has them (person ids are shared across
the cameras). In each camera and frame, ground-truth persons and tracks are matched one-to-one (Hungarian
on IoU, pairs below the threshold excluded). The figure is the fraction of co-visible person-frames
matched in both cameras whose two tracks carry the same global id (a missing global id never matches);
``shared_id_pairs`` counts, per frame, the pairs of different persons whose matched tracks (in either
camera) share a global id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from pipeline_tools.hota import box_iou, linear_assignment

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels."""
CameraTruth = Mapping[int, Mapping[int, Box]]
"""frame -> person id -> box."""


@dataclass(frozen=True)
class TrackBox:
    """One track in one frame of one camera."""

    track_id: int
    box: Box
    global_id: int | None


CameraTracks = Mapping[int, Sequence[TrackBox]]
"""frame -> the camera's tracks in that frame."""


class JsonlFormatError(ValueError):
    """A malformed line of a per-camera JSON Lines tracks file; the message names the file and line."""


@dataclass(frozen=True)
class CrossCameraResult:
    """Counts over person-frames; ``fraction`` is ``same_global_id / matched`` (None when nothing matched)."""

    covisible: int
    matched: int
    same_global_id: int
    shared_id_pairs: int
    iou: float

    @property
    def fraction(self) -> float | None:
        return self.same_global_id / self.matched if self.matched else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"fraction_same_global_id": self.fraction, "covisible": self.covisible,
                "matched": self.matched, "same_global_id": self.same_global_id,
                "shared_id_pairs": self.shared_id_pairs, "iou": self.iou}


def match_persons(truth: Mapping[int, Box], tracks: Sequence[TrackBox], iou: float) -> dict[int, TrackBox]:
    """Person id -> the track matched to them (one-to-one, maximum total IoU, IoU >= ``iou``)."""
    if not truth or not tracks:
        return {}
    persons = list(truth)
    sim = box_iou(np.array([truth[p] for p in persons]), np.array([t.box for t in tracks]))
    sim[sim < iou - np.finfo(float).eps] = 0
    rows, cols = linear_assignment(-sim)
    return {persons[r]: tracks[c] for r, c in zip(rows, cols) if sim[r, c] > 0}


def cross_camera_consistency(truth_a: CameraTruth, tracks_a: CameraTracks, truth_b: CameraTruth,
                             tracks_b: CameraTracks, iou: float = 0.5) -> CrossCameraResult:
    """The figures of the module docstring for cameras A and B (frames numbered alike in all four)."""
    covisible = matched = same = shared = 0
    for frame in sorted(set(truth_a) | set(truth_b)):
        in_a, in_b = truth_a.get(frame, {}), truth_b.get(frame, {})
        match_a = match_persons(in_a, tracks_a.get(frame, ()), iou)
        match_b = match_persons(in_b, tracks_b.get(frame, ()), iou)
        for person in set(in_a) & set(in_b):
            covisible += 1
            if person in match_a and person in match_b:
                matched += 1
                gid = match_a[person].global_id
                same += gid is not None and gid == match_b[person].global_id
        persons_of: dict[int, set[int]] = {}
        for matches in (match_a, match_b):
            for person, track in matches.items():
                if track.global_id is not None:
                    persons_of.setdefault(track.global_id, set()).add(person)
        pairs = {pair for persons in persons_of.values() for pair in combinations(sorted(persons), 2)}
        shared += len(pairs)
    return CrossCameraResult(covisible, matched, same, shared, iou)


View = dict[int, dict[int, Box]]


def overlapping_views(truth: CameraTruth, width: float, view_fraction: float = 0.6,
                      min_visible: float = 0.5) -> tuple[View, View]:
    """Two camera views cut out of one camera's ground truth: the left and the right ``view_fraction``.

    Each box is clipped to the view and shifted into its coordinates (the right view starts at
    ``(1 - view_fraction) * width``); it is kept, with its person id, when at least ``min_visible`` of
    its width lies inside the view. Persons in the middle ``2 * view_fraction - 1`` of the frame are seen
    by both views.
    """
    offset_b = (1.0 - view_fraction) * width
    views: tuple[View, View] = ({}, {})
    for (start, end), view in zip(((0.0, view_fraction * width), (offset_b, width)), views):
        for frame, persons in truth.items():
            for person, (x1, y1, x2, y2) in persons.items():
                c1, c2 = max(x1, start), min(x2, end)
                if x2 > x1 and c2 - c1 >= min_visible * (x2 - x1):
                    view.setdefault(frame, {})[person] = (c1 - start, y1, c2 - start, y2)
    return views


def read_camera_jsonl(path: str | Path) -> dict[int, list[TrackBox]]:
    """A per-camera JSON Lines tracks file: ``{"frame": n, "tracks": [{"id", "box": [x1,y1,x2,y2],
    "global_id"}]}`` per line (other fields ignored; ``global_id`` may be null or absent)."""
    frames: dict[int, list[TrackBox]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
                frame, tracks = record["frame"], record["tracks"]
                if not isinstance(frame, int) or isinstance(frame, bool) or frame < 1:
                    raise JsonlFormatError(f"{where}: frame {frame!r} is not an integer >= 1")
                frames.setdefault(frame, []).extend(_track(where, t) for t in tracks)
            except JsonlFormatError:
                raise
            except (ValueError, KeyError, TypeError) as exc:
                expected = '{"frame": n, "tracks": [...]}'
                raise JsonlFormatError(f"{where}: expected {expected} ({exc})") from None
    if not frames:
        raise JsonlFormatError(f"{path}: no lines (an empty file)")
    return frames


def _track(where: str, t: Mapping[str, object]) -> TrackBox:
    box, gid = t["box"], t.get("global_id")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise JsonlFormatError(f"{where}: box {box!r} is not [x1, y1, x2, y2]")
    if gid is not None and (not isinstance(gid, int) or isinstance(gid, bool)):
        raise JsonlFormatError(f"{where}: global_id {gid!r} is not an integer or null")
    return TrackBox(int(t["id"]), tuple(float(v) for v in box), gid)


def format_result(r: CrossCameraResult) -> str:
    """The human-readable summary ``pipeline-evaluate --cross-camera`` prints."""
    fraction = "n/a" if r.fraction is None else f"{100 * r.fraction:.2f}%"
    return (f"same global id in both cameras: {fraction} of {r.matched} co-visible person-frames matched in "
            f"both (of {r.covisible} co-visible; IoU >= {r.iou:g})\n"
            f"pairs of different persons sharing a global id in a frame: {r.shared_id_pairs}\n")
