"""Metrics end to end: a real Prometheus scrapes the real server and its HTTP API returns our series.

Also checks that every metric the Grafana dashboard queries exists on the live server.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import cv2
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import image_input
from pipeline_config import paths
from pipeline_server.server import TritonServer, free_ports
from tests.integration.prometheus import BINARY, query, running_prometheus, scrape_config
from tests.integration.server_metrics import finished, scrape, settled, value
from tests.unit.sample_data import vtest_frame

DASHBOARD = paths.project_root() / "docker" / "grafana" / "dashboards" / "pipeline.json"
# Reported only where a GPU is (nvidia DCGM); this machine has none.
GPU_METRICS = {
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_power_usage",
}
CAMERA_A, CAMERA_B = 801, 802  # ids no other test uses on the shared server
CORRUPT = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8  # a JPEG header, then noise


@pytest.fixture(scope="module")
def grpc(triton_server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def traffic(triton_server: TritonServer, grpc) -> Iterator[dict]:
    """Camera A sends 3 frames, camera B 2 frames and one corrupt frame; both stay live until the end.

    Yields the server's series before and after the traffic.
    """
    frames = [cv2.imencode(".jpg", vtest_frame(i))[1].tobytes() for i in range(3)]
    before = scrape(triton_server.metrics_url)
    for i, frame in enumerate(frames):
        grpc.infer("pipeline", [image_input(frame)], sequence_id=CAMERA_A, sequence_start=i == 0)
    grpc.infer("pipeline", [image_input(frames[0])], sequence_id=CAMERA_B, sequence_start=True)
    with pytest.raises(Exception, match="corrupt JPEG"):
        grpc.infer("pipeline", [image_input(CORRUPT)], sequence_id=CAMERA_B)
    grpc.infer("pipeline", [image_input(frames[1])], sequence_id=CAMERA_B)
    # Six requests; the corrupt one fails before the tracker.
    count = "pipeline_stage_duration_us_count"
    timed = {(count, (("stage", s),)): value(before, count, stage=s) + 5 for s in ("decode", "resize", "postprocess", "track")}
    after = settled(triton_server.metrics_url, {"pipeline": finished(before, "pipeline") + 6,
                                                "tracker": finished(before, "tracker") + 5}, counts=timed)
    yield {"before": before, "after": after}
    for camera in (CAMERA_A, CAMERA_B):
        try:
            grpc.infer("pipeline", [image_input(frames[2])], sequence_id=camera, sequence_end=True)
        except InferenceServerException as error:  # reclaimed while a slow test ran: nothing to end
            assert "START" in error.message(), error


def test_server_exposes_the_pipeline_metrics(traffic, triton_server, grpc):
    before, after = traffic["before"], traffic["after"]
    assert value(after, "pipeline_frames_total", camera=str(CAMERA_A)) == 3
    assert value(after, "pipeline_frames_total", camera=str(CAMERA_B)) == 2
    assert value(after, "pipeline_decode_failures_total", camera=str(CAMERA_B), reason="corrupt") == 1
    live = {"model_instance": "tracker_0_0"}  # the committed repository has one tracker instance
    assert value(after, "pipeline_live_cameras", **live) == value(before, "pipeline_live_cameras", **live) + 2
    for stage in ("decode", "resize", "postprocess", "track"):
        count = "pipeline_stage_duration_us_count"
        assert value(after, count, stage=stage) - value(before, count, stage=stage) == 5, stage
        assert value(after, "pipeline_stage_duration_us_sum", stage=stage) > value(
            before, "pipeline_stage_duration_us_sum", stage=stage
        )
    assert (
        value(after, "nv_inference_request_success", model="pipeline", version="1")
        == value(before, "nv_inference_request_success", model="pipeline", version="1") + 5
    )


def test_end_drops_the_camera_series(triton_server, grpc):
    """END reaches the tracker and, through the ensemble's request flags, the preprocess step."""
    camera = 803
    series = (
        ("frames", "pipeline_frames_total", (("camera", str(camera)),)),
        ("failures", "pipeline_decode_failures_total", (("camera", str(camera)), ("reason", "corrupt"))),
    )
    frame = cv2.imencode(".jpg", vtest_frame(0))[1].tobytes()
    start = scrape(triton_server.metrics_url)
    pipeline, tracker = finished(start, "pipeline"), finished(start, "tracker")
    grpc.infer("pipeline", [image_input(frame)], sequence_id=camera, sequence_start=True)
    with pytest.raises(InferenceServerException, match="corrupt JPEG"):
        grpc.infer("pipeline", [image_input(CORRUPT)], sequence_id=camera)
    live = settled(triton_server.metrics_url, {"pipeline": pipeline + 2, "tracker": tracker + 1})
    assert [live.get((name, labels)) for _, name, labels in series] == [1, 1]
    grpc.infer("pipeline", [image_input(frame)], sequence_id=camera, sequence_end=True)
    ended = settled(triton_server.metrics_url, {"pipeline": pipeline + 3, "tracker": tracker + 2})
    assert [(what, (name, labels) in ended) for what, name, labels in series] == [
        ("frames", False),
        ("failures", False),
    ]


@pytest.fixture(scope="module")
def prometheus(triton_server: TritonServer, tmp_path_factory) -> Iterator[str]:
    """Debian's Prometheus scraping the server every second with the compose config; yields its URL."""
    if not BINARY.is_file():
        pytest.fail(f"{BINARY} is missing: run `make prometheus` (a dependency of `make test`)")
    (port,) = free_ports(1)
    workdir = tmp_path_factory.mktemp("prometheus")
    key_file = workdir / "metrics_key"  # the compose config's bearer token; Triton's own port ignores it
    key_file.write_text("test-metrics-key")
    config = scrape_config(f"localhost:{triton_server.ports.metrics}", key_file)
    with running_prometheus(config, port, workdir) as url:
        yield url


def test_prometheus_scrapes_the_server(traffic, triton_server, prometheus):
    target = f"localhost:{triton_server.ports.metrics}"
    now = scrape(triton_server.metrics_url)  # other tests of this module may have sent frames since
    expected = {
        f'pipeline_frames_total{{camera="{CAMERA_A}"}}': 3,
        f'pipeline_frames_total{{camera="{CAMERA_B}"}}': 2,
        f'pipeline_decode_failures_total{{camera="{CAMERA_B}",reason="corrupt"}}': 1,
        'pipeline_live_cameras{model_instance="tracker_0_0"}': value(
            now, "pipeline_live_cameras", model_instance="tracker_0_0"
        ),
        'pipeline_stage_duration_us_count{stage="decode"}': value(
            now, "pipeline_stage_duration_us_count", stage="decode"
        ),
        'nv_inference_request_success{model="pipeline"}': value(
            now, "nv_inference_request_success", model="pipeline", version="1"
        ),
    }
    deadline = time.monotonic() + 60
    while True:
        got = {promql: [*query(prometheus, promql).values()] for promql in expected}
        if all(got[q] == [v] for q, v in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == {q: [v] for q, v in expected.items()}
    assert query(prometheus, f'up{{instance="{target}"}}') == {(): 1.0}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"], "no panels"
    queries = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            queries.append(target["expr"])
    return queries


def test_dashboard_queries_only_metrics_the_server_has(traffic, triton_server):
    names = {name for name, _ in scrape(triton_server.metrics_url)}
    used = {name for expr in dashboard_queries() for name in re.findall(r"\b(?:nv|pipeline)_[a-z_]+", expr)}
    assert {"pipeline_live_cameras", "pipeline_frames_total", "nv_inference_request_success"} <= used
    assert used & GPU_METRICS  # GPU use is on the dashboard
    assert sorted(used - GPU_METRICS - names) == []


def test_dashboard_queries_are_valid_promql(prometheus):
    for expr in dashboard_queries():
        with urllib.request.urlopen(
            f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        ) as reply:
            assert json.load(reply)["status"] == "success", expr
