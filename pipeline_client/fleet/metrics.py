"""Per-camera counts, occupancy and frames in Prometheus text (``pipeline-track-cameras --metrics-port``).

Read at scrape time from what the fleet already keeps (each camera's counters and report, each event
sink's tally), so nothing is counted twice::

    pipeline_fleet_line_crossings_total{camera, line, direction}   in / out, as counts.json
    pipeline_fleet_zone_occupancy{camera, zone}                    tracks inside on the latest frame
    pipeline_fleet_zone_entries_total{camera, zone}
    pipeline_fleet_frames_sent_total{camera}
    pipeline_fleet_frames_dropped_total{camera}                    live frames replaced by newer ones
    pipeline_fleet_frame_errors_total{camera}                      frames the server refused
    pipeline_fleet_events_delivered_total{sink} / _dropped_total{sink}

Served by prometheus-client (the registry's official client: pure Python, no dependencies; it writes the
text format with its escaping and runs the HTTP server) rather than a stdlib server of our own, which would
repeat both. Bound to 127.0.0.1 unless ``--metrics-address`` says otherwise; no authentication (put the
gateway or a firewall in front to expose it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LOGGER = logging.getLogger(__name__)

PREFIX = "pipeline_fleet"
DEFAULT_ADDRESS = "127.0.0.1"


def fleet_metrics(
    snapshots: Mapping[str, Mapping[str, Mapping[str, Any]]],
    frames: Mapping[str, tuple[int, int, int]],
    events: Mapping[str, tuple[int, int]],
) -> list[Metric]:
    """The metric families (pure).

    Args:
        snapshots: camera -> counts.json's entry (line -> ``{"in", "out"}``; zone -> ``{"occupancy",
            "entries", ...}``).
        frames: camera -> ``(sent, dropped, errors)``.
        events: sink label -> ``(delivered, dropped)``.
    """
    crossings = CounterMetricFamily(
        f"{PREFIX}_line_crossings", "Line crossings per direction", labels=["camera", "line", "direction"]
    )
    occupancy = GaugeMetricFamily(
        f"{PREFIX}_zone_occupancy", "Tracks inside the zone on the latest frame", labels=["camera", "zone"]
    )
    entries = CounterMetricFamily(f"{PREFIX}_zone_entries", "Visits started", labels=["camera", "zone"])
    for camera, items in snapshots.items():
        for name, value in items.items():
            if "in" in value:
                for direction in ("in", "out"):
                    crossings.add_metric([camera, name, direction], value[direction])
            else:
                occupancy.add_metric([camera, name], value["occupancy"])
                entries.add_metric([camera, name], value["entries"])
    sent = CounterMetricFamily(f"{PREFIX}_frames_sent", "Frames sent to the server", labels=["camera"])
    dropped = CounterMetricFamily(
        f"{PREFIX}_frames_dropped", "Live frames replaced by newer ones before being sent", labels=["camera"]
    )
    errors = CounterMetricFamily(f"{PREFIX}_frame_errors", "Frames the server refused", labels=["camera"])
    for camera, (n_sent, n_dropped, n_errors) in frames.items():
        sent.add_metric([camera], n_sent)
        dropped.add_metric([camera], n_dropped)
        errors.add_metric([camera], n_errors)
    delivered = CounterMetricFamily(f"{PREFIX}_events_delivered", "Events delivered", labels=["sink"])
    lost = CounterMetricFamily(
        f"{PREFIX}_events_dropped", "Events not delivered (queue full, rejected, waiting)", labels=["sink"]
    )
    for sink, (n_delivered, n_lost) in events.items():
        delivered.add_metric([sink], n_delivered)
        lost.add_metric([sink], n_lost)
    return [crossings, occupancy, entries, sent, dropped, errors, delivered, lost]


class FleetCollector(Collector):
    """Collects :func:`fleet_metrics` from ``state()`` at each scrape."""

    def __init__(self, state: Callable[[], tuple[Mapping, Mapping, Mapping]]) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        return fleet_metrics(*self._state())


class MetricsServer:
    """The fleet's ``/metrics`` on ``address:port`` (port 0: any free one, see ``port``).

    Raises:
        OSError: the address cannot be bound (port in use, unknown address).
    """

    def __init__(self, port: int, address: str = DEFAULT_ADDRESS) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._cameras: Sequence[tuple[str, Any, Any]] = ()  # (label, CameraCounts, CameraReport)
        self._events: Any = None
        self.registry.register(FleetCollector(self._state))
        self._httpd, self._thread = start_http_server(port, address, registry=self.registry)
        self.port = self._httpd.server_port
        LOGGER.info("metrics on http://%s:%d/metrics", address, self.port)

    def watch(self, counts: Mapping[Any, Any], reports: Sequence[Any], events: Any = None) -> None:
        """What to report: camera id -> ``CameraCounts``, the ``CameraReport`` list, the ``EventBus``."""
        self._cameras = tuple((str(r.camera_id), counts[r.camera_id], r) for r in reports)
        self._events = events

    def _state(self) -> tuple[Mapping, Mapping, Mapping]:
        snapshots = {label: counts.snapshot() for label, counts, _ in self._cameras}
        frames = {label: (r.frames, r.dropped, r.errors) for label, _, r in self._cameras}
        sinks = {} if self._events is None else self._events.stats()
        return snapshots, frames, {label: (s.delivered, s.dropped) for label, s in sinks.items()}

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
