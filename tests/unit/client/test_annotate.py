"""Drawing tracks, trails and writing the annotated video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline_client.annotate import VideoSink, bottom_centres, draw_tracks, id_color, update_trails

H, W = 240, 320


def test_id_colors_are_distinct_and_stable() -> None:
    colors = [id_color(i) for i in range(1, 21)]
    assert len(set(colors)) == 20
    assert id_color(7) == id_color(7)
    assert all(0 <= c <= 255 for color in colors for c in color)


def test_draw_box_changes_edges_only() -> None:
    blank = np.zeros((H, W, 3), np.uint8)
    out = draw_tracks(blank, np.array([5]), np.array([[100.0, 80.0, 200.0, 200.0]]))
    assert not blank.any(), "input frame must not be modified"
    color = np.array(id_color(5), np.uint8)
    # The four edges carry the ID's colour.
    for y, x in [(200, 150), (140, 100), (140, 200), (80, 150)]:
        np.testing.assert_array_equal(out[y, x], color)
    # The inside (below the label) and far outside stay black.
    assert not out[120:190, 110:190].any()
    assert not out[:, 220:].any() and not out[210:, :].any()
    # The label (filled background) sits above the box's top-left corner.
    assert out[60:80, 100:115].any()


def test_draw_nothing_is_a_copy() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8)
    out = draw_tracks(frame, np.empty(0, np.int64), np.empty((0, 4)))
    np.testing.assert_array_equal(out, frame)
    assert out is not frame


def test_bottom_centres() -> None:
    np.testing.assert_array_equal(
        bottom_centres(np.array([[10, 20, 30, 60], [0, 0, 5, 5]], np.float32)), [[20, 60], [2, 5]]
    )
    assert bottom_centres(np.empty((0, 4))).shape == (0, 2)


def test_update_trails_appends_caps_and_drops() -> None:
    trails = update_trails({}, np.array([1, 2]), np.array([[0, 0, 10, 10], [20, 0, 40, 30]]), max_len=3)
    assert trails == {1: ((5, 10),), 2: ((30, 30),)}
    for step in range(1, 4):
        previous = trails
        trails = update_trails(trails, np.array([1]), np.array([[step, 0, 10 + step, 10]]), max_len=3)
        assert 2 not in trails, "a track absent from the frame loses its trail"
    assert previous[1] != trails[1], "update must not modify its input"
    assert trails[1] == ((6, 10), (7, 10), (8, 10))


def test_trail_is_drawn() -> None:
    blank = np.zeros((H, W, 3), np.uint8)
    trail = {3: ((20, 200), (120, 200), (220, 200))}
    out = draw_tracks(blank, np.empty(0, np.int64), np.empty((0, 4)), trail)
    np.testing.assert_array_equal(out[200, 70], id_color(3))
    np.testing.assert_array_equal(out[200, 170], id_color(3))
    assert not out[:150].any()


def test_video_sink_writes_readable_mp4(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.mp4"
    sink = VideoSink(path, fps=10)
    for i in range(5):
        frame = np.zeros((H, W, 3), np.uint8)
        sink.write(draw_tracks(frame, np.array([1]), np.array([[10 + 10 * i, 20, 80 + 10 * i, 120]])))
    sink.close()
    sink.close()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) == 5
    assert frames[0].shape == (H, W, 3)
    assert frames[0][60, 10].max() > 100, "the box edge survives compression"
