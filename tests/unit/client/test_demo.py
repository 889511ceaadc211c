"""The demo's output names and its port choice (``preferred_or_free_ports``)."""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline_client.demo import output_paths
from pipeline_server.server import Ports, free_ports, port_is_free, preferred_or_free_ports


def test_ports_keeps_free_preferred_ports() -> None:
    preferred = Ports(*free_ports(3))
    assert preferred_or_free_ports(preferred) == (preferred, False)


def test_ports_falls_back_when_one_is_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        http, metrics = free_ports(2)
        ports, fell_back = preferred_or_free_ports(Ports(http, busy, metrics))
        assert fell_back
        assert busy not in (ports.http, ports.grpc, ports.metrics)
        assert len({ports.http, ports.grpc, ports.metrics}) == 3
        assert all(port_is_free(p) for p in (ports.http, ports.grpc, ports.metrics))


def test_output_paths_named_after_the_video() -> None:
    assert output_paths(Path("/data/vtest.avi"), Path("out")) == (
        Path("out/vtest.tracks.txt"),
        Path("out/vtest.annotated.mp4"),
    )
