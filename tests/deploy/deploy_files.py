"""Readers of the deployment files in ``docker/`` (compose, Dockerfile, Prometheus, Grafana), for tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from pipeline_config import paths

DOCKER = paths.project_root() / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_TENSORRT = DOCKER / "compose.tensorrt.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
GRAFANA_DATASOURCE = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
GRAFANA_DASHBOARDS = DOCKER / "grafana" / "provisioning" / "dashboards" / "pipeline.yaml"
# tritonserver 2.51.0 is NVIDIA's container release 24.10; each monthly release adds one minor version.
_TRITON_IMAGE = re.compile(
    r"^FROM\s+nvcr\.io/nvidia/tritonserver:(?P<yy>\d\d)\.(?P<mm>\d\d)-py3(\s+AS\s+\w+)?\s*$", re.MULTILINE
)


@dataclass(frozen=True)
class Mount:
    """One bind mount of a compose service: host path (resolved against ``docker/``), container path."""

    source: Path
    target: str
    read_only: bool


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    with path.open() as fh:
        return yaml.safe_load(fh)


def bind_mounts(service: dict[str, Any], base: Path = DOCKER) -> list[Mount]:
    """The short-syntax ``host:container[:ro]`` volumes of a compose service (relative hosts from ``base``)."""
    mounts = []
    for entry in service.get("volumes", []):
        source, target, *mode = str(entry).split(":")
        mounts.append(Mount((base / source).resolve(), target, mode == ["ro"]))
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """``(host, container)`` port pairs of a compose service."""
    pairs = []
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        pairs.append((int(host), int(container)))
    return pairs


def healthcheck_url(service: dict[str, Any]) -> str:
    """The URL in a service's health-check command."""
    urls = [arg for arg in service["healthcheck"]["test"] if str(arg).startswith("http")]
    assert len(urls) == 1, service["healthcheck"]
    return urls[0]


def url_port(url: str) -> int:
    """The port of ``url`` (``http://host:port/...`` or ``host:port``)."""
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    assert parsed.port is not None, url
    return parsed.port


def dockerfile_triton_tag(text: str) -> tuple[int, int]:
    """``(YY, MM)`` of the Dockerfile's ``FROM nvcr.io/nvidia/tritonserver:YY.MM-py3``."""
    matches = list(_TRITON_IMAGE.finditer(text))
    assert len(matches) == 1, "one pinned FROM nvcr.io/nvidia/tritonserver:YY.MM-py3"
    return int(matches[0]["yy"]), int(matches[0]["mm"])


def triton_release(yy: int, mm: int) -> str:
    """The tritonserver version of NVIDIA's container release ``YY.MM`` (24.10 -> 2.51.0)."""
    return f"2.{51 + (yy * 12 + mm) - (24 * 12 + 10)}.0"


def dockerfile_instruction(text: str, name: str) -> list[str]:
    """The argument lines of every ``name`` instruction (continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


@dataclass(frozen=True)
class Stage:
    """One ``FROM base [AS name]`` stage of a Dockerfile and its instruction lines (continuations joined)."""

    base: str
    name: str | None
    lines: tuple[str, ...]


def dockerfile_stages(text: str) -> tuple[list[str], list[Stage]]:
    """The instructions before the first FROM (global ARGs) and every stage, in order."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    preamble: list[str] = []
    stages: list[Stage] = []
    for line in lines:
        words = line.split()
        if words[0].upper() == "FROM":
            name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else None
            stages.append(Stage(words[1], name, ()))
        elif stages:
            last = stages[-1]
            stages[-1] = Stage(last.base, last.name, (*last.lines, line))
        else:
            preamble.append(line)
    return preamble, stages
