"""Line crossings and zones: the rule of issue 19 on hand-made paths of a track's bottom-centre."""

from __future__ import annotations

import pytest

from pipeline_client.fleet.counting import LineCounter, ZoneCounter, anchor, crossing, inside, side

# A vertical door from (10, 0) down to (10, 10): (x2-x1)(qy-y1) - (y2-y1)(qx-x1) = -10 (qx - 10), so
# ending right of it (qx > 10) is "out" and ending left of it is "in".
P1, P2 = (10.0, 0.0), (10.0, 10.0)


def test_anchor_is_the_bottom_centre_and_side_is_the_issue_formula() -> None:
    assert anchor([2, 3, 6, 9]) == (4.0, 9.0)
    assert side(P1, P2, (12, 5)) == -20 and side(P1, P2, (8, 5)) == 20 and side(P1, P2, (10, 99)) == 0


@pytest.mark.parametrize(
    ("name", "path", "expected"),
    [
        ("left to right through the middle", [(8, 5), (12, 5)], [(1, "out")]),
        ("right to left through the middle", [(12, 5), (8, 5)], [(1, "in")]),
        ("exactly through an endpoint", [(8, -2), (12, 2)], [(1, "out")]),
        ("exactly through the other endpoint", [(12, 8), (8, 12)], [(1, "in")]),
        ("past the end of the segment: no crossing", [(8, 12), (12, 12)], []),
        ("across the line's extension above", [(8, -5), (12, -5)], []),
        ("touching the line and going back", [(8, 5), (10, 5), (8, 6)], []),
        ("touching the line then going on", [(8, 5), (10, 5), (12, 5)], [(1, "out")]),
        ("moving along the line", [(10, 1), (10, 4), (10, 9)], []),
        ("on one side all the time", [(2, 1), (5, 9), (9, 5)], []),
        ("back and forth counts both ways", [(8, 5), (12, 5), (8, 5)], [(1, "out"), (1, "in")]),
    ],
)
def test_line_crossings(name: str, path: list[tuple[float, float]], expected: list[tuple[int, str]]) -> None:
    line = LineCounter(P1, P2)
    events = [event for q in path for event in line.update([(1, q)])]
    assert events == expected, name
    assert line.counts == {
        "in": sum(d == "in" for _, d in expected),
        "out": sum(d == "out" for _, d in expected),
    }


def test_a_track_that_skips_frames_steps_from_where_it_was_last_seen() -> None:
    line = LineCounter(P1, P2)
    frames = [[(1, (8, 5)), (2, (0, 0))], [(2, (1, 1))], [(2, (2, 2))], [(1, (12, 5)), (2, (3, 3))]]
    events = [event for frame in frames for event in line.update(frame)]
    assert events == [(1, "out")]
    # A skip whose straight move passes beyond the segment's end does not count.
    line = LineCounter(P1, P2)
    assert [e for f in [[(3, (8, 20))], [], [(3, (12, 20))]] for e in line.update(f)] == []


def test_tracks_are_independent_and_reset_forgets_them() -> None:
    line = LineCounter(P1, P2)
    line.update([(1, (8, 5)), (2, (12, 5))])
    assert line.update([(1, (12, 5)), (2, (8, 5))]) == [(1, "out"), (2, "in")]
    line.reset_tracks()  # ids restart: track 1 is someone else now
    assert line.update([(1, (8, 5))]) == []


def test_crossing_is_none_for_a_move_parallel_to_the_segment() -> None:
    assert crossing(P1, P2, (8, 0), (8, 10)) is None


SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))


@pytest.mark.parametrize(
    ("q", "expected"),
    [((5, 5), True), ((0, 5), True), ((10, 10), True), ((5, 0), True), ((11, 5), False), ((-0.1, 5), False)],
)
def test_inside_counts_the_border(q: tuple[float, float], expected: bool) -> None:
    assert inside(SQUARE, q) is expected


def test_inside_a_concave_polygon() -> None:
    u_shape = ((0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3))
    assert inside(u_shape, (0.5, 2)) and inside(u_shape, (2.5, 2)) and not inside(u_shape, (1.5, 2))


def test_zone_entries_leaving_occupancy_and_dwell() -> None:
    zone = ZoneCounter(SQUARE)
    assert zone.update(0.0, [(1, (20, 5)), (2, (5, 5))]) == [(2, "entered")]
    assert zone.occupancy == 1 and zone.entries == 1
    assert zone.update(1.0, [(1, (5, 5)), (2, (6, 5))]) == [(1, "entered")]
    assert zone.occupancy == 2
    assert zone.update(2.0, [(1, (5, 5)), (2, (30, 5))]) == [(2, "left")]
    assert zone.occupancy == 1
    assert zone.dwell_s(2) == 1.0  # seen inside at 0 and 1, outside at 2
    assert zone.dwell_s(1) == 1.0  # ongoing: inside at 1 and 2
    assert zone.mean_dwell_s == 1.0
    # Track 1 is absent for a frame: its visit goes on; then it re-enters after leaving: a new entry.
    assert zone.update(3.0, []) == [] and zone.occupancy == 0
    assert zone.update(4.0, [(1, (5, 6))]) == []
    assert zone.dwell_s(1) == 3.0 and zone.entries == 2
    zone.update(5.0, [(1, (50, 6))])
    zone.update(6.0, [(1, (5, 6))])
    assert zone.entries == 3 and zone.summary() == {
        "occupancy": 1,
        "entries": 3,
        "mean_dwell_s": round(4 / 3, 4),
    }


def test_zone_reset_closes_the_visits() -> None:
    zone = ZoneCounter(SQUARE)
    zone.update(0.0, [(1, (5, 5))])
    zone.update(2.0, [(1, (5, 5))])
    zone.reset_tracks()
    assert zone.occupancy == 0 and zone.mean_dwell_s == 2.0
    assert zone.update(3.0, [(1, (5, 5))]) == [(1, "entered")] and zone.entries == 2
