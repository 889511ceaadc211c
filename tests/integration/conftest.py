"""Real ``tritonserver`` fixtures: one server per repository per session, on free ports.

``triton_factory(repository)`` starts (once) and returns a ready ``TritonServer`` for any model
repository; ``cpu_repository`` is the cpu profile rendered once per session (as ``make serve`` renders it),
and ``triton_server`` serves it. Every server is stopped at the end of the session, and a failing test
gets the tail of each server log it used as a report section.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from pipeline_config import paths
from pipeline_config.render import render
from pipeline_server.server import Ports, TritonServer, free_ports
from pipeline_tools.local_pipeline import LocalPipeline

LOG_TAIL_LINES = 60


class ServerFactory:
    """Starts one server per repository on free ports and stops them all in ``close``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: dict[Path, TritonServer] = {}

    def __call__(self, repository: Path, startup_timeout_s: float = 300.0) -> TritonServer:
        """The running server for ``repository`` (started on first use)."""
        key = Path(repository).resolve()
        if key not in self.servers:
            log_path = self.log_dir / f"{key.name}-{len(self.servers)}.log"
            server = TritonServer(
                key, Ports(*free_ports(3)), log_path=log_path, startup_timeout_s=startup_timeout_s
            )
            server.start()
            self.servers[key] = server
        return self.servers[key]

    def close(self) -> None:
        """Stops every server this factory started."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


@pytest.fixture(scope="session")
def triton_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Factory of session-scoped servers: ``triton_factory(repository) -> TritonServer``."""
    factory = ServerFactory(tmp_path_factory.mktemp("tritonserver-logs"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def cpu_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cpu profile rendered into a servable repository (adapters and weights linked; the committed
    ``model_repository/`` holds every profile's adapters and is not served)."""
    return render(paths.DEFAULT_PROFILE, tmp_path_factory.mktemp("cpu") / "model_repository")


@pytest.fixture(scope="session")
def triton_server(triton_factory: ServerFactory, cpu_repository: Path) -> TritonServer:
    """The rendered cpu profile served on free ports."""
    return triton_factory(cpu_repository)


@pytest.fixture(scope="module")
def client(triton_server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    """A gRPC client of ``triton_server`` for one test module."""
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as c:
        yield c


@pytest.fixture(scope="module")
def local() -> LocalPipeline:
    """The cpu profile's stages in-process (what the server should answer)."""
    return LocalPipeline.from_profile("cpu")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attaches the logs of the servers a failing test used."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    servers: list[TritonServer] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, TritonServer):
            servers.append(value)
        elif isinstance(value, ServerFactory):
            servers.extend(value.servers.values())
    for server in dict.fromkeys(servers):
        tail = "\n".join(server.log_text().splitlines()[-LOG_TAIL_LINES:])
        report.sections.append((f"tritonserver log {server.log_path} (last {LOG_TAIL_LINES} lines)", tail))
