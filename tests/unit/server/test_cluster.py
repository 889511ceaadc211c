"""``pipeline-serve --servers N``: what is refused before anything starts, and ``servers.json``."""

from __future__ import annotations

import json

import pytest

from pipeline_server import server
from pipeline_server.cluster import MAX_LOCAL_SERVERS, Cluster, check_server_count
from pipeline_server.gateway import GatewaySettings
from pipeline_server.keys import ApiKeys
from pipeline_server.server import Ports, free_ports

KEYS = ApiKeys(inference="i" * 20, admin="a" * 20)


@pytest.mark.parametrize("good", [1, 3, MAX_LOCAL_SERVERS])
def test_server_counts(good):
    assert check_server_count(good) == good


@pytest.mark.parametrize("bad", [0, -2, MAX_LOCAL_SERVERS + 1, 10**9, True, 2.0, "3", None])
def test_bad_server_counts_name_the_bounds(bad):
    with pytest.raises(ValueError, match=f"--servers must be an integer in 1..{MAX_LOCAL_SERVERS}"):
        check_server_count(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--servers", "0"], "--servers must be an integer in 1..16, got 0"),
        (["--servers", "17"], "got 17"),
        (["--servers", "x"], "invalid int value"),
        (["--servers", "2", "--no-gateway"], "--servers runs several tritonservers behind the gateway"),
        (["--servers", "2", "--print-command"], "no --no-gateway/--exec/--print-command"),
    ],
)
def test_the_launcher_refuses_bad_server_options(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("PIPELINE_INFERENCE_KEY", "i" * 20)
    monkeypatch.setenv("PIPELINE_ADMIN_KEY", "a" * 20)
    with pytest.raises(SystemExit) as info:
        server.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_each_server_gets_its_own_ports_and_log(tmp_path):
    cluster = Cluster(tmp_path, 3, GatewaySettings(Ports(*free_ports(3))), KEYS, tmp_path / "out")
    ports = [p for s in cluster.servers for p in (s.ports.http, s.ports.grpc, s.ports.metrics)]
    assert len(set(ports)) == 9
    assert [s.log_path.name for s in cluster.servers] == [f"tritonserver-{k}.log" for k in range(3)]
    assert cluster.gateway.backends == tuple(s.ports for s in cluster.servers)
    (tmp_path / "out").mkdir()
    records = cluster.write_servers_file()
    assert json.loads(cluster.servers_file.read_text()) == records
    assert records[1] == {"pid": None, "grpc_port": ports[4], "http_port": ports[3], "metrics_port": ports[5]}


def test_stop_removes_servers_json(tmp_path):
    cluster = Cluster(tmp_path, 1, GatewaySettings(Ports(*free_ports(3))), KEYS, tmp_path)
    cluster.write_servers_file()
    cluster.stop()
    assert not cluster.servers_file.exists()
