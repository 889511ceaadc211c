"""The fleet's YAML config, validated whole before any camera starts.

::

    server: localhost:8101
    cameras:
      - id: 7                          # integer > 0 or string
        source: rtsp://cam7/stream     # file, frame directory, RTSP/HTTP URL or webcam index
        fps: 10                        # optional: the tracker's frame rate (default the file's own rate)
        tracker: {track_buffer: 30, track_thresh: 0.5}   # optional: TrackerConfig fields but frame_rate
        lines:
          - name: door
            points: [[384, 150], [384, 576]]
        zones:
          - name: queue
            polygon: [[0, 0], [200, 0], [200, 300], [0, 300]]

Every error names the camera and the field (``cameras[0] (id 7): lines[0].points: ...``); unknown keys,
wrong types, duplicate camera ids, a line without exactly 2 points and a polygon with fewer than 3 are
errors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline_models.cameras import CameraId, check_camera_id
from pipeline_models.settings import TrackerConfig
from pipeline_server.server import DEFAULT_GRPC_PORT

DEFAULT_SERVER = f"localhost:{DEFAULT_GRPC_PORT}"
#: Tracker settings a camera may set, with their types: TrackerConfig's fields but ``frame_rate``
#: (that is the camera's ``fps``). Sent with the camera's START under these names.
TRACKER_FIELDS: dict[str, type] = {
    f.name: type(f.default) for f in dataclasses.fields(TrackerConfig) if f.name != "frame_rate"
}
FRAME_RATE = "frame_rate"

Point = tuple[float, float]
_TOP_KEYS = {"server", "cameras", "events"}
_CAMERA_KEYS = {"id", "source", "fps", "tracker", "lines", "zones"}


class ConfigError(ValueError):
    """The config is invalid; the message names the camera and the field."""


@dataclass(frozen=True)
class Line:
    """A counting line: the segment from ``points[0]`` to ``points[1]`` (pixels)."""

    name: str
    points: tuple[Point, Point]


@dataclass(frozen=True)
class Zone:
    """A zone: a polygon of at least 3 points (pixels)."""

    name: str
    polygon: tuple[Point, ...]


@dataclass(frozen=True)
class CameraConfig:
    """One camera.

    Attributes:
        id: the sequence id on the server.
        source: file, frame directory, URL, or webcam index (int).
        fps: the tracker's frame rate for this camera; None: the file's own rate, else the server's.
        tracker: tracker settings (``TRACKER_FIELDS``) sent with START; absent ones are the server's.
        lines, zones: what is counted.
    """

    id: CameraId
    source: str | int
    fps: float | None = None
    tracker: Mapping[str, bool | int | float] = field(default_factory=dict)
    lines: tuple[Line, ...] = ()
    zones: tuple[Zone, ...] = ()

    @property
    def file_stem(self) -> str:
        """The camera's output file name without suffix (characters other than letters, digits, ``-``,
        ``.`` become ``_``)."""
        return re.sub(r"[^A-Za-z0-9.-]", "_", str(self.id)).lstrip(".") or "_"


@dataclass(frozen=True)
class FleetConfig:
    server: str
    cameras: tuple[CameraConfig, ...]
    events: Any = None  # pipeline_client.fleet.events.EventsConfig (events.py builds on this module)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _point(value: Any, where: str) -> Point:
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ConfigError(f"{where}: a point is [x, y] (two numbers), got {value!r:.60}")
    return float(value[0]), float(value[1])


def _points(value: Any, where: str) -> tuple[Point, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list of [x, y] points, got {type(value).__name__}")
    return tuple(_point(p, f"{where}[{i}]") for i, p in enumerate(value))


def _mapping(
    value: Any, where: str, allowed: set[str], required: set[str] = frozenset()
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in set(value) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
    missing = sorted(required - set(value))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.name: expected a non-empty string, got {value!r:.60}")
    return value


def _tracker(value: Any, where: str) -> dict[str, bool | int | float]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and FRAME_RATE in value:
        raise ConfigError(f"{where}.{FRAME_RATE}: set the camera's fps instead")
    settings = _mapping(value, where, set(TRACKER_FIELDS))
    out: dict[str, bool | int | float] = {}
    for key, raw in settings.items():
        kind = TRACKER_FIELDS[key]
        ok = (
            isinstance(raw, bool)
            if kind is bool
            else (isinstance(raw, int) and not isinstance(raw, bool) if kind is int else _is_number(raw))
        )
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {raw!r:.60}")
        if kind is int and raw < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {raw}")
        if kind is float and not 0.0 <= raw <= 1.0:
            raise ConfigError(f"{where}.{key}: must be in 0..1, got {raw}")
        out[key] = kind(raw)
    return out


def _lines(value: Any, where: str) -> tuple[Line, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    lines = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        item = _mapping(raw, at, {"name", "points"}, {"name", "points"})
        points = _points(item["points"], f"{at}.points")
        if len(points) != 2:
            raise ConfigError(f"{at}.points: a line needs exactly 2 points, got {len(points)}")
        if points[0] == points[1]:
            raise ConfigError(f"{at}.points: the two points are the same")
        lines.append(Line(_name(item["name"], at), (points[0], points[1])))
    return tuple(lines)


def _zones(value: Any, where: str) -> tuple[Zone, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    zones = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        item = _mapping(raw, at, {"name", "polygon"}, {"name", "polygon"})
        polygon = _points(item["polygon"], f"{at}.polygon")
        if len(polygon) < 3:
            raise ConfigError(f"{at}.polygon: a polygon needs at least 3 points, got {len(polygon)}")
        zones.append(Zone(_name(item["name"], at), polygon))
    return tuple(zones)


def _camera(raw: Any, index: int) -> CameraConfig:
    where = f"cameras[{index}]"
    if isinstance(raw, Mapping) and "id" in raw:
        where = f"{where} (id {raw['id']!r:.40})"
    item = _mapping(raw, where, _CAMERA_KEYS, {"id", "source"})
    try:
        camera_id = check_camera_id(item["id"])
    except ValueError as error:
        raise ConfigError(f"{where}.id: {error}") from None
    source = item["source"]
    if isinstance(source, bool) or not isinstance(source, str | int) or source == "":
        raise ConfigError(f"{where}.source: expected a path, URL or webcam index, got {source!r:.60}")
    fps = item.get("fps")
    if fps is not None and (not _is_number(fps) or fps <= 0):
        raise ConfigError(f"{where}.fps: expected a number > 0, got {fps!r:.60}")
    lines = _lines(item.get("lines"), f"{where}.lines")
    zones = _zones(item.get("zones"), f"{where}.zones")
    names = [x.name for x in (*lines, *zones)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: line and zone names must be unique, {', '.join(dup)} repeated")
    return CameraConfig(
        camera_id,
        source,
        None if fps is None else float(fps),
        _tracker(item.get("tracker"), f"{where}.tracker"),
        lines,
        zones,
    )


def parse_config(data: Any) -> FleetConfig:
    """A :class:`FleetConfig` from the YAML document's data.

    Raises:
        ConfigError: anything wrong, naming the camera and the field.
    """
    top = _mapping(data, "config", _TOP_KEYS, {"cameras"})
    server = top.get("server", DEFAULT_SERVER)
    if not isinstance(server, str) or not server:
        raise ConfigError(f"server: expected host:port, got {server!r:.60}")
    raw_cameras = top["cameras"]
    if not isinstance(raw_cameras, list) or not raw_cameras:
        raise ConfigError("cameras: expected a non-empty list of cameras")
    cameras = tuple(_camera(raw, i) for i, raw in enumerate(raw_cameras))
    seen: dict[object, int] = {}
    stems: dict[str, int] = {}
    for i, camera in enumerate(cameras):
        if camera.id in seen:
            raise ConfigError(f"cameras[{i}] (id {camera.id!r}).id: duplicate of cameras[{seen[camera.id]}]")
        seen[camera.id] = i
        if camera.file_stem in stems:
            raise ConfigError(
                f"cameras[{i}] (id {camera.id!r}).id: its output files {camera.file_stem}.* are those of "
                f"cameras[{stems[camera.file_stem]}]"
            )
        stems[camera.file_stem] = i
    from pipeline_client.fleet.events import parse_events  # here: events.py imports this module

    return FleetConfig(server, cameras, parse_events(top.get("events")))


def load_config(path: str | Path) -> FleetConfig:
    """Read and validate a YAML config file.

    Raises:
        ConfigError: unreadable, not YAML, or invalid (:func:`parse_config`).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def sources_config(sources: list[str], server: str | None) -> FleetConfig:
    """The config of repeated ``--source`` arguments: cameras 1..N with the server's settings.

    Raises:
        ConfigError: no source.
    """
    if not sources:
        raise ConfigError("give --config FILE or at least one --source")
    cameras = tuple(
        CameraConfig(i, int(s) if s.isdigit() and not Path(s).exists() else s)
        for i, s in enumerate(sources, 1)
    )
    return FleetConfig(server or DEFAULT_SERVER, cameras)
