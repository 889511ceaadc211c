"""The fleet's Prometheus metrics: built from its live state (pure), served on 127.0.0.1, scraped while the
fake fleet runs; a port in use is a clear error."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline_client.fleet import cli
from pipeline_client.fleet.metrics import MetricsServer, fleet_metrics
from tests.unit.client.test_fleet_runner import LINE, ZONE, SlowTriton, write_frame_dir


def samples(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def scrape(port: int) -> dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return samples(reply.read().decode())


def test_fleet_metrics_from_the_state() -> None:
    families = fleet_metrics(
        {
            "7": {"door": {"in": 2, "out": 1}, "queue": {"occupancy": 3, "entries": 5, "mean_dwell_s": 1.0}},
            'we"ird\n': {},
        },
        {"7": (30, 4, 1), 'we"ird\n': (0, 0, 0)},
        {"mqtt://b:1883": (9, 2)},
    )
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    assert (
        got[("pipeline_fleet_line_crossings_total", (("camera", "7"), ("direction", "in"), ("line", "door")))]
        == 2
    )
    assert got[("pipeline_fleet_zone_occupancy", (("camera", "7"), ("zone", "queue")))] == 3
    assert got[("pipeline_fleet_zone_entries_total", (("camera", "7"), ("zone", "queue")))] == 5
    assert got[("pipeline_fleet_frames_dropped_total", (("camera", "7"),))] == 4
    assert got[("pipeline_fleet_frame_errors_total", (("camera", "7"),))] == 1
    assert got[("pipeline_fleet_frames_sent_total", (("camera", 'we"ird\n'),))] == 0
    assert got[("pipeline_fleet_events_dropped_total", (("sink", "mqtt://b:1883"),))] == 2
    empty = fleet_metrics({}, {}, {})
    assert [f.samples for f in empty] == [[]] * len(empty)


def test_the_server_escapes_labels_and_a_busy_port_is_an_error() -> None:
    server = MetricsServer(0)
    try:

        class Report:
            camera_id, frames, dropped, errors = 'a"b\\c', 3, 0, 0

        class Counts:
            def snapshot(self) -> dict:
                return {"door": {"in": 1, "out": 0}}

        server.watch({'a"b\\c': Counts()}, [Report()])
        got = scrape(server.port)  # the parser reads back what the server wrote
        assert got[("pipeline_fleet_frames_sent_total", (("camera", 'a"b\\c'),))] == 3
        with pytest.raises(OSError):
            MetricsServer(server.port)
    finally:
        server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)  # closed


def test_scraped_while_the_fleet_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    frames = write_frame_dir(tmp_path / "frames", 120)
    server = SlowTriton()
    server.delay_s = 0.01
    monkeypatch.setattr(cli, "make_client", lambda _url, _ssl=False, _root_cert=None: server)
    monkeypatch.setattr(cli, "check_ready", lambda *_a, **_k: ())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "site.yaml"
    config.write_text(f"cameras: [{{id: 1, source: {frames}, lines: [{LINE}], zones: [{ZONE}]}}]\n")
    scrapes: list[dict] = []

    def scraper() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(scrapes) < 3:
            try:
                got = scrape(port)
            except OSError:
                time.sleep(0.02)
                continue
            if got.get(("pipeline_fleet_frames_sent_total", (("camera", "1"),)), 0) > 5:
                scrapes.append(got)
            time.sleep(0.05)

    thread = threading.Thread(target=scraper)
    thread.start()
    status = cli.main(
        ["--config", str(config), "--out-dir", str(tmp_path / "out"), "--metrics-port", str(port)]
    )
    thread.join()
    assert status == cli.EXIT_OK and len(scrapes) == 3
    sent = [s[("pipeline_fleet_frames_sent_total", (("camera", "1"),))] for s in scrapes]
    assert sent == sorted(sent) and 5 < sent[0] and sent[-1] <= 120  # mid-run, growing
    last = scrapes[-1]
    assert (
        last[
            ("pipeline_fleet_line_crossings_total", (("camera", "1"), ("direction", "out"), ("line", "door")))
        ]
        == 1
    )
    assert last[("pipeline_fleet_zone_entries_total", (("camera", "1"), ("zone", "left")))] == 1
    assert last[("pipeline_fleet_zone_occupancy", (("camera", "1"), ("zone", "left")))] == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        assert (
            cli.main(["--config", str(config), "--out-dir", str(tmp_path / "o"), "--metrics-port", taken])
            == 2
        )
    assert f"--metrics-port {taken} on 127.0.0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--config", str(config), "--out-dir", str(tmp_path / "o"), "--metrics-port", "70000"])
