"""The gateway's camera routing over several tritonservers (``pipeline_server.routing``), as rendered."""

from __future__ import annotations

import subprocess

import pytest

from pipeline_server.gateway import Gateway, GatewaySettings, render_config, write_runtime_files
from pipeline_server.keys import ApiKeys
from pipeline_server.server import Ports

KEYS = ApiKeys(inference="i" * 20, admin="a" * 20)


def backends(n: int) -> list[Ports]:
    return [Ports(9000 + 10 * k, 9001 + 10 * k, 9002 + 10 * k) for k in range(n)]


def test_one_server_renders_no_camera_routing(tmp_path):
    text = render_config(GatewaySettings(), backends(1), tmp_path)
    rules = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "camera-id" not in rules and "balance" not in rules and "stick" not in rules
    # no trace of the empty rules: the lines around them are adjacent, as in the one-server template
    assert "option httpchk GET /v2/health/ready\n    server triton0 127.0.0.1:9001" in text
    assert "if !metrics_key\n    http-request del-header x-api-key" in text
    assert "backend triton_metrics\n    server triton0 127.0.0.1:9002\n" in text


def test_only_whole_line_empty_placeholders_are_dropped():
    from pipeline_server.gateway import render_strict

    text = "a\n${x}\nb ${y}\n${z}\n"
    assert render_strict(text, {"x": "", "y": "", "z": "z"}, "t") == "a\nb \nz\n"


def test_several_servers_hash_the_camera_id_consistently_and_remember_it(tmp_path):
    text = render_config(GatewaySettings(route_expire_s=120), backends(3), tmp_path)
    for backend in ("triton_grpc", "triton_http"):
        section = text.split(f"\nbackend {backend}\n")[1].split("\n\n")[0]
        assert "balance hdr(camera-id)\n    hash-type consistent sdbm avalanche" in section
        assert "stick-table type string len 384 size 1m expire 120s" in section
        assert "stick match req.fhdr(camera-id) unless { req.fhdr(sequence-start) -m found }" in section
        assert "stick store-request req.fhdr(camera-id)" in section and "retry-on conn-failure" in section
        assert section.index("default-server weight 100") < section.index("server triton0")
        assert section.count("check inter 2s fall 2 rise 1") == 3
    assert "connection-%[src]-%[src_port] if sequence_infer sequence_model" in text
    assert "connection-%[src]-%[src_port] if post sequence_infer" in text
    http = text.split("\nfrontend http\n")[1].split("\n\n")[0]
    assert "option http-buffer-request" in http  # req.body: the JSON's sequence_start
    assert ("http-request set-header sequence-start 1 if post sequence_infer !{ req.fhdr(sequence-start) -m "
            "found } { req.body -m reg '\"sequence_start\"[[:space:]]*:[[:space:]]*true' }") in http
    assert "use-server triton2 if { urlp(server) -m str 2 }" in text
    assert "use-service prometheus-exporter" in text


def test_haproxy_accepts_the_cluster_config(tmp_path):
    gateway = Gateway(GatewaySettings(), backends(3), KEYS, "internal-key")
    if not gateway.binary.is_file():
        pytest.skip("no haproxy: run make setup")
    write_runtime_files(tmp_path, KEYS, GatewaySettings())
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(GatewaySettings(), backends(3), tmp_path))
    check = subprocess.run(
        [str(gateway.binary), "-c", "-f", str(config)], check=False, env=gateway.environment(),
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "has no backend capability" not in check.stderr  # every rule sits where HAProxy reads it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"route_expire_s": 0}, "route expiry"),
        ({"route_expire_s": 1e9}, "route expiry"),
        ({"sequence_models": ("tracker",)}, "must be public models"),
    ],
)
def test_bad_routing_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GatewaySettings(**kwargs)
