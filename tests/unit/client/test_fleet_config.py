"""The fleet config: the issue's example parses; every mistake is an error naming the camera and field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipeline_client.fleet.config import (
    DEFAULT_SERVER,
    ConfigError,
    Line,
    Zone,
    load_config,
    parse_config,
    sources_config,
)

EXAMPLE = """
server: localhost:8101
cameras:
  - id: 7            # integer or string
    source: rtsp://cam7/stream   # file, frame directory, RTSP/HTTP URL or webcam index
    fps: 10
    tracker: {track_buffer: 30, track_thresh: 0.5}   # optional, per camera
    lines:
      - name: door
        points: [[384, 150], [384, 576]]
    zones:
      - name: queue
        polygon: [[0, 0], [200, 0], [200, 300], [0, 300]]
  - id: gate-3
    source: 0
"""

BASE = {"cameras": [{"id": 7, "source": "a.avi"}]}


def test_the_issue_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.server == "localhost:8101"
    cam, gate = config.cameras
    assert (cam.id, cam.source, cam.fps) == (7, "rtsp://cam7/stream", 10.0)
    assert cam.tracker == {"track_buffer": 30, "track_thresh": 0.5}
    assert cam.lines == (Line("door", ((384.0, 150.0), (384.0, 576.0))),)
    assert cam.zones == (Zone("queue", ((0.0, 0.0), (200.0, 0.0), (200.0, 300.0), (0.0, 300.0))),)
    assert (gate.id, gate.source, gate.fps, gate.tracker, gate.lines) == ("gate-3", 0, None, {}, ())


def test_defaults_and_quick_sources() -> None:
    assert parse_config(BASE).server == DEFAULT_SERVER
    config = sources_config(["a.avi", "rtsp://x/y", "0"], None)
    assert [(c.id, c.source) for c in config.cameras] == [(1, "a.avi"), (2, "rtsp://x/y"), (3, 0)]
    with pytest.raises(ConfigError, match="--source"):
        sources_config([], None)


def _with(path: tuple, value: object) -> dict:
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


LINE = {"name": "door", "points": [[0, 0], [10, 0]]}
ZONE = {"name": "q", "polygon": [[0, 0], [1, 0], [1, 1]]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cameras": [], "x": 1}, r"config: unknown key\(s\) x"),
        ({"server": "s"}, r"config: missing key\(s\) cameras"),
        ({"cameras": []}, "cameras: expected a non-empty list"),
        (_with(("cameras", 0, "colour"), "red"), r"cameras\[0\] \(id 7\): unknown key\(s\) colour"),
        ({"cameras": [{"source": "a"}]}, r"cameras\[0\]: missing key\(s\) id"),
        ({"cameras": [{"id": 0, "source": "a"}]}, r"cameras\[0\] \(id 0\)\.id:"),
        ({"cameras": [{"id": 1.5, "source": "a"}]}, r"cameras\[0\] \(id 1\.5\)\.id:"),
        (
            {"cameras": [{"id": 7, "source": "a"}, {"id": 7, "source": "b"}]},
            r"cameras\[1\] \(id 7\)\.id: duplicate",
        ),
        (
            {"cameras": [{"id": "a b", "source": "a"}, {"id": "a_b", "source": "b"}]},
            r"cameras\[1\].*output files",
        ),
        (_with(("cameras", 0, "source"), True), r"\(id 7\)\.source:"),
        (_with(("cameras", 0, "fps"), 0), r"\(id 7\)\.fps: expected a number > 0"),
        (_with(("cameras", 0, "fps"), "10"), r"\(id 7\)\.fps:"),
        (
            _with(("cameras", 0, "tracker"), {"track_bufer": 3}),
            r"\(id 7\)\.tracker: unknown key\(s\) track_bufer",
        ),
        (_with(("cameras", 0, "tracker"), {"track_buffer": 2.5}), r"\.tracker\.track_buffer: expected int"),
        (_with(("cameras", 0, "tracker"), {"track_buffer": True}), r"\.tracker\.track_buffer: expected int"),
        (
            _with(("cameras", 0, "tracker"), {"track_thresh": 1.5}),
            r"\.tracker\.track_thresh: must be in 0\.\.1",
        ),
        (_with(("cameras", 0, "tracker"), {"mot20": 1}), r"\.tracker\.mot20: expected bool"),
        (
            _with(("cameras", 0, "tracker"), {"frame_rate": 10}),
            r"\.tracker\.frame_rate: set the camera's fps",
        ),
        (
            _with(("cameras", 0, "lines"), [{**LINE, "points": [[0, 0], [1, 1], [2, 2]]}]),
            r"\(id 7\)\.lines\[0\]\.points: a line needs exactly 2 points, got 3",
        ),
        (_with(("cameras", 0, "lines"), [{**LINE, "points": [[0, 0]]}]), r"lines\[0\]\.points: .*got 1"),
        (
            _with(("cameras", 0, "lines"), [{**LINE, "points": [[0, 0], [0, 0]]}]),
            r"lines\[0\]\.points: .*same",
        ),
        (
            _with(("cameras", 0, "lines"), [{**LINE, "points": [[0, "a"], [1, 1]]}]),
            r"lines\[0\]\.points\[0\]:",
        ),
        (_with(("cameras", 0, "lines"), [{"points": LINE["points"]}]), r"lines\[0\]: missing key\(s\) name"),
        (_with(("cameras", 0, "lines"), [{**LINE, "colour": 1}]), r"lines\[0\]: unknown key\(s\) colour"),
        (_with(("cameras", 0, "lines"), {"door": 1}), r"\(id 7\)\.lines: expected a list"),
        (
            _with(("cameras", 0, "zones"), [{**ZONE, "polygon": [[0, 0], [1, 1]]}]),
            r"\(id 7\)\.zones\[0\]\.polygon: a polygon needs at least 3 points, got 2",
        ),
        (_with(("cameras", 0, "zones"), [{**ZONE, "name": ""}]), r"zones\[0\]\.name:"),
        (
            {"cameras": [{"id": 7, "source": "a", "lines": [LINE], "zones": [{**ZONE, "name": "door"}]}]},
            r"\(id 7\): line and zone names must be unique, door",
        ),
    ],
)
def test_mistakes_name_the_camera_and_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_a_file_that_is_not_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
