"""The annotated video's labels: the track ID, and with ReID its global id and name; colours per track."""

from __future__ import annotations

import numpy as np

from pipeline_client.annotate import MAX_NAME_CHARS, draw_tracks, id_color, label_name, track_labels

H, W = 240, 320
BOX = np.array([[100.0, 80.0, 200.0, 200.0]])


def test_labels_without_reid_are_the_track_ids() -> None:
    assert track_labels(np.array([7, 12])) == ["7", "12"]
    assert track_labels(np.empty(0, np.int64), np.empty(0, np.int64), ()) == []


def test_labels_with_global_ids_and_names() -> None:
    labels = track_labels(np.array([7, 8]), np.array([[12, 13]]), ("Alice", ""))
    assert labels == ["7 | g12 Alice", "8 | g13"]
    assert track_labels(np.array([7]), np.array([12])) == ["7 | g12"]


def test_names_are_made_safe_and_short_for_the_video() -> None:
    assert label_name("  Bob ") == "Bob"
    assert label_name("Zoë\t") == "Zo?"
    long = label_name("x" * 100)
    assert len(long) == MAX_NAME_CHARS and long.endswith("...")


def test_without_reid_the_frame_is_drawn_exactly_as_before() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (H, W, 3), np.uint8)
    ids = np.array([5])
    np.testing.assert_array_equal(
        draw_tracks(frame, ids, BOX), draw_tracks(frame, ids, BOX, labels=track_labels(ids))
    )


def test_the_identity_label_is_wider_and_keeps_the_track_colour() -> None:
    blank = np.zeros((H, W, 3), np.uint8)
    plain = draw_tracks(blank, np.array([5]), BOX)
    named = draw_tracks(blank, np.array([5]), BOX, labels=track_labels(np.array([5]), np.array([12]), ("Alice",)))
    color = np.array(id_color(5), np.uint8)
    for out in (plain, named):
        np.testing.assert_array_equal(out[200, 150], color)  # the box's bottom edge
    label_row = 65  # inside the label's filled background above the box
    plain_width = int((plain[label_row] != 0).any(axis=1).sum())
    named_width = int((named[label_row] != 0).any(axis=1).sum())
    assert named_width > 3 * plain_width
    assert (named[label_row, 100:300] == color).all(axis=1).sum() > (plain[label_row] == color).all(axis=1).sum()
