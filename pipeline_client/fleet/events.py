"""The fleet's events (pure): what happened on a camera, as JSON-ready payloads, and the ``events:`` config.

Events, each a JSON object with ``event``, ``camera`` (the configured id) and ``time`` (Unix seconds when
it was built):

- ``line_crossed``: ``line``, ``track_id``, ``global_id``, ``name`` (null without ReID), ``direction``
  (``in``/``out``, the counting rule of :mod:`pipeline_client.fleet.counting`), ``frame`` (1-based, as in
  the camera's JSON Lines) and ``ts`` (the frame's time, as there);
- ``zone_entered`` / ``zone_left``: ``zone``, the same track and frame fields; ``zone_left`` adds
  ``dwell_s``, the visit's dwell. Visits still open when a camera ends, or closed by a sequence restart,
  send no ``zone_left``;
- ``camera_up`` / ``camera_down``: ``reason`` (``started``, ``reconnected``; ``ended``, ``stopped``, a live
  source lost, or why the camera failed).

MQTT topics are ``<topic_prefix>/<camera>/<event>`` (``/``, ``+`` and ``#`` in a camera id become ``_``:
one topic level, no wildcard). The config (top-level ``events:`` of the fleet YAML)::

    events:
      mqtt: {host: localhost, port: 1883, topic_prefix: pipeline, username: u, password_file: /run/pw}
      webhook: {url: "http://hooks.local/fleet", timeout_s: 5, headers: {Authorization: "Bearer x"}}
      queue_size: 1000      # per sink: events waiting beyond it are dropped (and counted)
      flush_s: 5            # at the end, how long the sinks may take to deliver what is queued

Every error names the field (``events.mqtt.port: ...``).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_client.fleet.config import ConfigError, _is_number, _mapping
from pipeline_models.cameras import CameraId

LINE_CROSSED, ZONE_ENTERED, ZONE_LEFT = "line_crossed", "zone_entered", "zone_left"
CAMERA_UP, CAMERA_DOWN = "camera_up", "camera_down"
EVENT_KINDS = (LINE_CROSSED, ZONE_ENTERED, ZONE_LEFT, CAMERA_UP, CAMERA_DOWN)

DEFAULT_MQTT_PORT = 1883
DEFAULT_TOPIC_PREFIX = "pipeline"
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_FLUSH_S = 5.0
DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
MAX_QUEUE_SIZE = 1_000_000
MAX_TIMEOUT_S = 300.0
MAX_TOPIC_PREFIX_CHARS = 200
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
_HOST = re.compile(r"^[A-Za-z0-9._:-]+$")  # a host name, IPv4 or bare IPv6 address


@dataclass(frozen=True)
class Event:
    """One event: which camera, which kind (``EVENT_KINDS``) and its JSON payload."""

    camera_id: CameraId
    kind: str
    payload: Mapping[str, Any]


def topic_level(camera_id: CameraId) -> str:
    """The camera id as one MQTT topic level: ``/``, ``+``, ``#`` become ``_``."""
    return re.sub(r"[/+#]", "_", str(camera_id))


def topic(prefix: str, event: Event) -> str:
    """``<prefix>/<camera>/<event>``."""
    return f"{prefix}/{topic_level(event.camera_id)}/{event.kind}"


def _event(camera_id: CameraId, kind: str, now: float | None, **fields: Any) -> Event:
    payload = {"event": kind, "camera": camera_id, **fields, "time": time.time() if now is None else now}
    return Event(camera_id, kind, payload)


def _track_fields(
    track_id: int, global_id: int | None, name: str | None, frame_index: int, ts: float
) -> dict:
    return {
        "track_id": int(track_id),
        "global_id": None if global_id is None else int(global_id),
        "name": name or None,
        "frame": int(frame_index) + 1,
        "ts": round(float(ts), 4),
    }


def camera_event(camera_id: CameraId, up: bool, reason: str, now: float | None = None) -> Event:
    """``camera_up`` / ``camera_down`` with its reason."""
    return _event(camera_id, CAMERA_UP if up else CAMERA_DOWN, now, reason=reason)


def frame_events(
    camera_id: CameraId,
    frame_index: int,
    ts: float,
    track_ids: Sequence[int],
    global_ids: Sequence[int] | None,
    names: Sequence[str] | None,
    line_hits: Mapping[str, Sequence[tuple[int, str]]],
    zone_hits: Mapping[str, Sequence[tuple[int, str, float]]],
    now: float | None = None,
) -> list[Event]:
    """The events of one frame, from its counters' answers.

    Args:
        camera_id: the camera.
        frame_index: 0-based position of the frame in the source; ``ts`` its time (seconds).
        track_ids: ``n`` track ids of the frame; ``global_ids``, ``names``: aligned with them (None without
            ReID; a name ``""``: nobody enrolled).
        line_hits: line name -> ``(track id, "in"|"out")`` crossings.
        zone_hits: zone name -> ``(track id, "entered"|"left", dwell_s)``.
        now: the events' ``time`` (default: the clock).

    Returns:
        Line crossings first (in line order), then zone events.
    """
    position = {int(t): k for k, t in enumerate(track_ids)}

    def track(track_id: int) -> dict:
        k = position.get(int(track_id))
        gid = None if global_ids is None or k is None else global_ids[k]
        name = None if names is None or k is None else names[k]
        return _track_fields(track_id, gid, name, frame_index, ts)

    events = [
        _event(camera_id, LINE_CROSSED, now, line=line, **track(tid), direction=direction)
        for line, hits in line_hits.items()
        for tid, direction in hits
    ]
    for zone, hits in zone_hits.items():
        for tid, what, dwell_s in hits:
            if what == "entered":
                events.append(_event(camera_id, ZONE_ENTERED, now, zone=zone, **track(tid)))
            else:
                extra = {"dwell_s": round(float(dwell_s), 4)}
                events.append(_event(camera_id, ZONE_LEFT, now, zone=zone, **track(tid), **extra))
    return events


# --- config ---


@dataclass(frozen=True)
class MqttConfig:
    """An MQTT broker (v3.1.1, QoS 1). ``password`` is read from ``password_file`` when the config loads."""

    host: str
    port: int = DEFAULT_MQTT_PORT
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@dataclass(frozen=True)
class WebhookConfig:
    """An HTTP(S) URL each event is POSTed to as JSON."""

    url: str
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"webhook {parts.scheme}://{parts.hostname}{'' if parts.port is None else f':{parts.port}'}"


@dataclass(frozen=True)
class EventsConfig:
    """Where events go (either or both) and how much may wait per sink."""

    mqtt: MqttConfig | None = None
    webhook: WebhookConfig | None = None
    queue_size: int = DEFAULT_QUEUE_SIZE
    flush_s: float = DEFAULT_FLUSH_S


def _string(value: Any, where: str, max_chars: int = 1000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r:.60}")
    if len(value) > max_chars or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{where}: at most {max_chars} printable characters, got {value!r:.60}")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: expected an integer in {low}..{high}, got {value!r:.60}")
    return value


def _seconds(value: Any, where: str) -> float:
    if not _is_number(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ConfigError(f"{where}: expected seconds in (0, {MAX_TIMEOUT_S:g}], got {value!r:.60}")
    return float(value)


def _mqtt(value: Any, where: str) -> MqttConfig:
    item = _mapping(value, where, {"host", "port", "topic_prefix", "username", "password_file"}, {"host"})
    host = _string(item["host"], f"{where}.host", 253)
    if not _HOST.match(host):
        raise ConfigError(
            f"{where}.host: expected a host name or address (no scheme or port), got {host!r:.60}"
        )
    port = _int(item.get("port", DEFAULT_MQTT_PORT), f"{where}.port", 1, 65535)
    prefix = _string(
        item.get("topic_prefix", DEFAULT_TOPIC_PREFIX), f"{where}.topic_prefix", MAX_TOPIC_PREFIX_CHARS
    )
    if "+" in prefix or "#" in prefix or prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise ConfigError(f"{where}.topic_prefix: no wildcards (+ #) and no empty levels, got {prefix!r:.60}")
    username = None if item.get("username") is None else _string(item["username"], f"{where}.username")
    password = None
    if item.get("password_file") is not None:
        path = Path(_string(item["password_file"], f"{where}.password_file"))
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{where}.password_file: cannot read {path}: {error}") from None
        if username is None:
            raise ConfigError(f"{where}.password_file: needs a username")
    return MqttConfig(host, port, prefix, username, password)


def _webhook(value: Any, where: str) -> WebhookConfig:
    item = _mapping(value, where, {"url", "timeout_s", "headers"}, {"url"})
    url = _string(item["url"], f"{where}.url", 2000)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise ConfigError(f"{where}.url: {error}: {url!r:.60}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL with a host, got {url!r:.60}")
    timeout_s = _seconds(item.get("timeout_s", DEFAULT_WEBHOOK_TIMEOUT_S), f"{where}.timeout_s")
    raw_headers = item.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise ConfigError(f"{where}.headers: expected a mapping, got {type(raw_headers).__name__}")
    headers = {}
    for name, text in raw_headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(f"{where}.headers: {name!r:.40} is not a header name")
        headers[name] = _string(text, f"{where}.headers.{name}", 8000)
    return WebhookConfig(url, timeout_s, headers)


def parse_events(value: Any, where: str = "events") -> EventsConfig | None:
    """The ``events:`` block (None when absent).

    Raises:
        ConfigError: anything wrong, naming the field.
    """
    if value is None:
        return None
    item = _mapping(value, where, {"mqtt", "webhook", "queue_size", "flush_s"})
    mqtt = None if item.get("mqtt") is None else _mqtt(item["mqtt"], f"{where}.mqtt")
    webhook = None if item.get("webhook") is None else _webhook(item["webhook"], f"{where}.webhook")
    if mqtt is None and webhook is None:
        raise ConfigError(f"{where}: give mqtt, webhook or both")
    queue_size = _int(item.get("queue_size", DEFAULT_QUEUE_SIZE), f"{where}.queue_size", 1, MAX_QUEUE_SIZE)
    flush_s = _seconds(item.get("flush_s", DEFAULT_FLUSH_S), f"{where}.flush_s")
    return EventsConfig(mqtt, webhook, queue_size, flush_s)


def merge_cli(
    config: EventsConfig | None, mqtt: str | None, topic_prefix: str | None, webhook: str | None
) -> EventsConfig | None:
    """The config's events with ``--mqtt HOST[:PORT]``, ``--mqtt-topic-prefix`` and ``--webhook URL`` put
    over it (validated as the YAML is, the field named by its flag).

    Raises:
        ConfigError: a flag's value is invalid, or ``--mqtt-topic-prefix`` without a broker.
    """
    base = config or EventsConfig()
    new_mqtt = base.mqtt
    if mqtt is not None:
        host, _, port = mqtt.rpartition(":") if mqtt.count(":") == 1 else (mqtt, "", "")
        raw = {"host": host, **({"port": int(port)} if port.isdigit() else {})}
        if port and not port.isdigit():
            raise ConfigError(f"--mqtt: expected HOST[:PORT], got {mqtt!r:.60}")
        new_mqtt = _mqtt(raw, "--mqtt")
        if base.mqtt is not None:  # keep the config's credentials and prefix for the same broker
            new_mqtt = MqttConfig(
                new_mqtt.host, new_mqtt.port, base.mqtt.topic_prefix, base.mqtt.username, base.mqtt.password
            )
    if topic_prefix is not None:
        if new_mqtt is None:
            raise ConfigError("--mqtt-topic-prefix: needs --mqtt or events.mqtt in the config")
        prefix = _mqtt({"host": new_mqtt.host, "topic_prefix": topic_prefix}, "--mqtt").topic_prefix
        new_mqtt = MqttConfig(new_mqtt.host, new_mqtt.port, prefix, new_mqtt.username, new_mqtt.password)
    new_webhook = base.webhook if webhook is None else _webhook({"url": webhook}, "--webhook")
    if new_mqtt is None and new_webhook is None:
        return None
    return EventsConfig(new_mqtt, new_webhook, base.queue_size, base.flush_s)
