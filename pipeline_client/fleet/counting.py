"""Line crossings and zone occupancy of one camera's tracks (pure, no I/O).

The anchor of a track is the bottom-centre of its box, ``((x1 + x2) / 2, y2)`` (pixels, y down).

**Lines.** A track crosses the segment ``p1 -> p2`` when its anchor moves from one side of the segment to
the other between two consecutive frames of that track (frames the track is absent from do not count:
the step is from where it was last seen), and that movement crosses the segment itself (an endpoint
included), not just its extension. With the new anchor ``q`` the crossing is ``in`` when
``(x2 - x1)(qy - y1) - (y2 - y1)(qx - x1) > 0`` and ``out`` otherwise. An anchor exactly on the line is on
neither side: it keeps the track's last side, so touching the line and going back counts nothing, and
touching it then going on counts once (from the last point off the line). A track moving along the line
never changes side.

**Zones.** A track is in a zone when its anchor is inside the polygon or on its border. A visit starts on
the first frame the track is seen inside (an entry) and ends on the first frame it is seen outside; a
track that is absent for some frames stays in its visit until it is seen again. Occupancy is the number of
the latest frame's tracks that are inside. Dwell is the time from a visit's first frame to its last frame
seen inside; the mean dwell is over every visit so far (ongoing ones up to their last frame inside).
``reset_tracks`` forgets the tracks (a server restart reuses ids from 1) and closes their visits.

Why not supervision (the registry's 0.31.2; from its ``LineZone``/``PolygonZone`` source): its
``LineZone`` anchors on the box's four corners by default and counts
when all anchors have changed side, holding a per-track side history over several frames
(``minimum_crossing_threshold``) rather than comparing two consecutive frames of the track; it decides
"within the segment" by the anchors' positions against the segment's end normals, not by the movement
intersecting the segment; and its in/out follows its own orientation. ``PolygonZone`` gives a per-frame
mask without per-track visits or dwell. So neither fits the rules above exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Point = tuple[float, float]


def anchor(box: Sequence[float]) -> Point:
    """The bottom-centre of an ``[x1, y1, x2, y2]`` box."""
    return (float(box[0]) + float(box[2])) / 2.0, float(box[3])


def side(p1: Point, p2: Point, q: Point) -> float:
    """``(x2 - x1)(qy - y1) - (y2 - y1)(qx - x1)``: > 0 on the ``in`` side, < 0 on the ``out`` side."""
    return (p2[0] - p1[0]) * (q[1] - p1[1]) - (p2[1] - p1[1]) * (q[0] - p1[0])


def crossing(p1: Point, p2: Point, a: Point, b: Point) -> str | None:
    """``"in"``/``"out"`` when the move ``a -> b`` goes from one side of the segment ``p1 p2`` to the other
    through the segment itself (endpoints included), else None."""
    side_a, side_b = side(p1, p2, a), side(p1, p2, b)
    if side_a == 0 or side_b == 0 or (side_a > 0) == (side_b > 0):
        return None
    # p1 and p2 on different sides of the line a-b, or one of them on it: the move meets the segment.
    if side(a, b, p1) * side(a, b, p2) > 0:
        return None
    return "in" if side_b > 0 else "out"


def inside(polygon: Sequence[Point], q: Point) -> bool:
    """Whether ``q`` is inside ``polygon`` or on its border (even-odd rule)."""
    x, y = q
    result = False
    n = len(polygon)
    for i in range(n):
        (xa, ya), (xb, yb) = polygon[i], polygon[(i + 1) % n]
        if (
            side((xa, ya), (xb, yb), q) == 0
            and min(xa, xb) <= x <= max(xa, xb)
            and min(ya, yb) <= y <= max(ya, yb)
        ):
            return True
        if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
            result = not result
    return result


@dataclass
class LineCounter:
    """Counts crossings of one line; ``update`` once per frame with that frame's tracks."""

    p1: Point
    p2: Point
    counts: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    _last: dict[int, Point] = field(default_factory=dict)  # each track's last anchor off the line

    def update(self, tracks: Iterable[tuple[int, Point]]) -> list[tuple[int, str]]:
        """Feed one frame's ``(track id, anchor)`` pairs; returns the crossings ``(track id, "in"|"out")``."""
        events = []
        for track_id, q in tracks:
            if side(self.p1, self.p2, q) == 0:
                continue
            last = self._last.get(track_id)
            self._last[track_id] = q
            direction = None if last is None else crossing(self.p1, self.p2, last, q)
            if direction is not None:
                self.counts[direction] += 1
                events.append((track_id, direction))
        return events

    def reset_tracks(self) -> None:
        self._last.clear()


@dataclass
class _Visit:
    first_ts: float
    last_ts: float


@dataclass
class ZoneCounter:
    """Occupancy, entries and dwell of one zone; ``update`` once per frame with that frame's tracks."""

    polygon: tuple[Point, ...]
    entries: int = 0
    occupancy: int = 0
    _open: dict[int, _Visit] = field(default_factory=dict)
    _closed_dwell_s: list[float] = field(default_factory=list)
    _dwell_by_track: dict[int, float] = field(default_factory=dict)  # closed visits' dwell, per track
    _last_visit_s: dict[int, float] = field(default_factory=dict)  # each track's latest closed visit

    def update(self, ts: float, tracks: Iterable[tuple[int, Point]]) -> list[tuple[int, str]]:
        """Feed one frame (time ``ts`` seconds); returns ``(track id, "entered"|"left")`` events."""
        events = []
        occupancy = 0
        for track_id, q in tracks:
            visit = self._open.get(track_id)
            if inside(self.polygon, q):
                occupancy += 1
                if visit is None:
                    self._open[track_id] = _Visit(ts, ts)
                    self.entries += 1
                    events.append((track_id, "entered"))
                else:
                    visit.last_ts = ts
            elif visit is not None:
                self._close(track_id)
                events.append((track_id, "left"))
        self.occupancy = occupancy
        return events

    def _close(self, track_id: int) -> None:
        visit = self._open.pop(track_id)
        dwell = visit.last_ts - visit.first_ts
        self._closed_dwell_s.append(dwell)
        self._last_visit_s[track_id] = dwell
        self._dwell_by_track[track_id] = self._dwell_by_track.get(track_id, 0.0) + dwell

    def visit_dwell_s(self, track_id: int) -> float:
        """Seconds of the track's latest closed visit (0 without one): the dwell of a ``left`` event."""
        return self._last_visit_s.get(track_id, 0.0)

    def dwell_s(self, track_id: int) -> float:
        """Seconds the track has spent in the zone, over all its visits (the ongoing one included)."""
        visit = self._open.get(track_id)
        ongoing = 0.0 if visit is None else visit.last_ts - visit.first_ts
        return self._dwell_by_track.get(track_id, 0.0) + ongoing

    @property
    def mean_dwell_s(self) -> float:
        """Mean dwell over every visit so far (0 without visits)."""
        dwells = self._closed_dwell_s + [v.last_ts - v.first_ts for v in self._open.values()]
        return sum(dwells) / len(dwells) if dwells else 0.0

    def reset_tracks(self) -> None:
        for track_id in list(self._open):
            self._close(track_id)
        self._dwell_by_track.clear()
        self._last_visit_s.clear()
        self.occupancy = 0

    def summary(self) -> dict[str, float | int]:
        return {
            "occupancy": self.occupancy,
            "entries": self.entries,
            "mean_dwell_s": round(self.mean_dwell_s, 4),
        }
