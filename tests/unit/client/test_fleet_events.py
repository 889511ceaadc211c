"""The fleet's events: built from the counters' answers (pure), and the ``events:`` config validated field by
field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipeline_client.fleet.config import ConfigError, parse_config
from pipeline_client.fleet.events import (
    CAMERA_DOWN,
    CAMERA_UP,
    LINE_CROSSED,
    ZONE_ENTERED,
    ZONE_LEFT,
    EventsConfig,
    MqttConfig,
    WebhookConfig,
    camera_event,
    frame_events,
    merge_cli,
    parse_events,
    topic,
    topic_level,
)

NOW = 1700000000.0


def test_frame_events_carry_the_track_its_identity_and_the_frame() -> None:
    events = frame_events(
        7,
        frame_index=41,
        ts=4.1,
        track_ids=[3, 5],
        global_ids=[12, 13],
        names=["", "Alice"],
        line_hits={"door": [(5, "in")], "walk": []},
        zone_hits={"queue": [(3, "entered", 0.0), (5, "left", 2.5)]},
        now=NOW,
    )
    assert [e.kind for e in events] == [LINE_CROSSED, ZONE_ENTERED, ZONE_LEFT]
    assert events[0].payload == {
        "event": "line_crossed",
        "camera": 7,
        "line": "door",
        "track_id": 5,
        "global_id": 13,
        "name": "Alice",
        "direction": "in",
        "frame": 42,
        "ts": 4.1,
        "time": NOW,
    }
    assert events[1].payload["name"] is None and events[1].payload["global_id"] == 12  # "" is nobody
    assert "dwell_s" not in events[1].payload
    assert events[2].payload["dwell_s"] == 2.5 and events[2].payload["zone"] == "queue"


def test_frame_events_without_reid_have_null_identities() -> None:
    (event,) = frame_events("hall", 0, 0.0, [1], None, None, {"door": [(1, "out")]}, {}, now=NOW)
    assert (event.payload["global_id"], event.payload["name"], event.payload["frame"]) == (None, None, 1)
    assert frame_events("hall", 0, 0.0, [], None, None, {"door": []}, {"z": []}) == []


def test_camera_events_and_topics() -> None:
    up, down = camera_event("a/b+#", True, "started", NOW), camera_event(7, False, "ended", NOW)
    assert (up.kind, down.kind) == (CAMERA_UP, CAMERA_DOWN)
    assert down.payload == {"event": "camera_down", "camera": 7, "reason": "ended", "time": NOW}
    assert topic("site/1", up) == "site/1/a_b__/camera_up"  # one level, no wildcard
    assert topic_level(7) == "7"
    assert isinstance(camera_event(1, True, "x").payload["time"], float)


MQTT = {"host": "broker.local", "port": 1884, "topic_prefix": "site/a"}
WEBHOOK = {"url": "https://hooks.local:8443/fleet", "timeout_s": 2, "headers": {"Authorization": "Bearer x"}}


def test_the_events_block_parses_into_the_fleet_config(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    config = parse_config(
        {
            "cameras": [{"id": 1, "source": "a.avi"}],
            "events": {
                "mqtt": {**MQTT, "username": "u", "password_file": str(password)},
                "webhook": WEBHOOK,
                "queue_size": 10,
                "flush_s": 1,
            },
        }
    )
    assert config.events == EventsConfig(
        MqttConfig("broker.local", 1884, "site/a", "u", "s3cret"),
        WebhookConfig(WEBHOOK["url"], 2.0, {"Authorization": "Bearer x"}),
        10,
        1.0,
    )
    assert "s3cret" not in repr(config.events) and "Bearer" not in repr(config.events)
    assert config.events.webhook.label == "webhook https://hooks.local:8443"
    assert parse_config({"cameras": [{"id": 1, "source": "a.avi"}]}).events is None


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("mqtt", "events: expected a mapping"),
        ({}, "events: give mqtt, webhook or both"),
        ({"mqtt": MQTT, "kafka": {}}, "events: unknown key(s) kafka"),
        ({"mqtt": {"port": 1}}, "events.mqtt: missing key(s) host"),
        ({"mqtt": {**MQTT, "qos": 2}}, "events.mqtt: unknown key(s) qos"),
        ({"mqtt": {"host": ""}}, "events.mqtt.host: expected a non-empty string"),
        ({"mqtt": {"host": "mqtt://b"}}, "events.mqtt.host: expected a host name"),
        ({"mqtt": {"host": 5}}, "events.mqtt.host: expected a non-empty string"),
        ({"mqtt": {**MQTT, "port": "1883"}}, "events.mqtt.port: expected an integer in 1..65535"),
        ({"mqtt": {**MQTT, "port": 70000}}, "events.mqtt.port: expected an integer in 1..65535"),
        ({"mqtt": {**MQTT, "port": True}}, "events.mqtt.port: expected an integer"),
        ({"mqtt": {**MQTT, "topic_prefix": "a/#"}}, "events.mqtt.topic_prefix: no wildcards"),
        ({"mqtt": {**MQTT, "topic_prefix": "/a"}}, "events.mqtt.topic_prefix: no wildcards"),
        ({"mqtt": {**MQTT, "topic_prefix": "x" * 201}}, "events.mqtt.topic_prefix: at most 200"),
        ({"mqtt": {**MQTT, "password_file": "/nonexistent/pw"}}, "events.mqtt.password_file: cannot read"),
        ({"webhook": {"url": "ftp://h/x"}}, "events.webhook.url: expected an http:// or https:// URL"),
        ({"webhook": {"url": "http://"}}, "events.webhook.url: expected an http:// or https:// URL"),
        ({"webhook": {"url": "http://h:99999/"}}, "events.webhook.url: Port out of range"),
        ({"webhook": {"url": "http://h/\n"}}, "events.webhook.url: at most 2000 printable"),
        ({"webhook": {"url": "http://h/" + "a" * 2000}}, "events.webhook.url: at most 2000 printable"),
        ({"webhook": {**WEBHOOK, "timeout_s": 0}}, "events.webhook.timeout_s: expected seconds in (0, 300]"),
        ({"webhook": {**WEBHOOK, "timeout_s": 1e9}}, "events.webhook.timeout_s: expected seconds"),
        ({"webhook": {**WEBHOOK, "timeout_s": "5"}}, "events.webhook.timeout_s: expected seconds"),
        ({"webhook": {**WEBHOOK, "headers": ["a"]}}, "events.webhook.headers: expected a mapping"),
        ({"webhook": {**WEBHOOK, "headers": {"Bad Name": "x"}}}, "'Bad Name' is not a header name"),
        ({"webhook": {**WEBHOOK, "headers": {"X": "a\r\nInjected: 1"}}}, "events.webhook.headers.X: at most"),
        (
            {"webhook": {**WEBHOOK, "headers": {"X": 5}}},
            "events.webhook.headers.X: expected a non-empty string",
        ),
        ({"mqtt": MQTT, "queue_size": 0}, "events.queue_size: expected an integer in 1..1000000"),
        ({"mqtt": MQTT, "queue_size": 10**9}, "events.queue_size: expected an integer in 1..1000000"),
        ({"mqtt": MQTT, "queue_size": 1.5}, "events.queue_size: expected an integer"),
        ({"mqtt": MQTT, "flush_s": -1}, "events.flush_s: expected seconds"),
    ],
)
def test_a_bad_events_block_is_an_error_naming_the_field(events: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"cameras": [{"id": 1, "source": "a.avi"}], "events": copy.deepcopy(events)})
    assert message in str(error.value)


def test_a_password_file_needs_a_username(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    with pytest.raises(ConfigError, match=r"events.mqtt.password_file: needs a username"):
        parse_events({"mqtt": {"host": "b", "password_file": str(tmp_path / "pw")}})


def test_cli_flags_go_over_the_config() -> None:
    config = parse_events({"mqtt": {**MQTT, "username": "u"}, "queue_size": 5})
    merged = merge_cli(config, "127.0.0.1:1999", None, "http://127.0.0.1:8/hook")
    assert merged.mqtt == MqttConfig("127.0.0.1", 1999, "site/a", "u", None)
    assert merged.webhook == WebhookConfig("http://127.0.0.1:8/hook")
    assert merged.queue_size == 5
    assert merge_cli(None, "broker", "p/q", None).mqtt == MqttConfig("broker", 1883, "p/q")
    assert merge_cli(config, None, None, None) == config
    assert merge_cli(None, None, None, None) is None


@pytest.mark.parametrize(
    ("mqtt", "prefix", "webhook", "message"),
    [
        ("broker:x", None, None, "--mqtt: expected HOST[:PORT]"),
        ("broker:0", None, None, "--mqtt.port: expected an integer in 1..65535"),
        ("", None, None, "--mqtt.host: expected a non-empty string"),
        (None, "a/b", None, "--mqtt-topic-prefix: needs --mqtt"),
        ("broker", "a/+", None, "--mqtt.topic_prefix: no wildcards"),
        (None, None, "not a url", "--webhook.url: expected an http:// or https:// URL"),
    ],
)
def test_bad_cli_flags_are_errors_naming_the_flag(mqtt, prefix, webhook, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        merge_cli(None, mqtt, prefix, webhook)
    assert message in str(error.value)
