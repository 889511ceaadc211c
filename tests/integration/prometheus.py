"""A real Prometheus server for tests: Debian's binary (``make prometheus``) on a free port."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline_config import paths

BINARY = paths.project_root() / ".cache" / "prometheus" / "usr" / "bin" / "prometheus"
COMPOSE_CONFIG = paths.project_root() / "docker" / "prometheus" / "prometheus.yml"
COMPOSE_TARGET = '"triton:8102"'
COMPOSE_CREDENTIALS = "/run/secrets/metrics_key"
INTERVAL = re.compile(r"^(\s*(?:scrape|evaluation)_interval:\s*)\S+", re.MULTILINE)


def scrape_config(target: str, credentials_file: Path, interval: str = "1s") -> str:
    """The compose file's Prometheus config with its target and metrics-key file replaced and every interval
    set to ``interval``.

    Raises:
        ValueError: the compose config no longer has exactly one target, key file and scrape interval.
    """
    text = COMPOSE_CONFIG.read_text()
    if text.count(COMPOSE_TARGET) != 1 or text.count(COMPOSE_CREDENTIALS) != 1 or "scrape_interval:" not in text:
        raise ValueError(
            f"{COMPOSE_CONFIG}: expected one {COMPOSE_TARGET} target, {COMPOSE_CREDENTIALS} and a scrape_interval"
        )
    text = text.replace(COMPOSE_TARGET, json.dumps(target)).replace(COMPOSE_CREDENTIALS, str(credentials_file))
    return INTERVAL.sub(lambda m: m.group(1) + interval, text)


@contextmanager
def running_prometheus(config: str, port: int, workdir: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """Runs Prometheus with ``config`` on ``port``; yields its base URL; stops it at exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config)
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(BINARY),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {process.returncode}: {(workdir / 'prometheus.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout_s} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def query(url: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query: each series' labels (without ``__name__``, ``job``, ``instance``) -> value."""
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=10
    ) as reply:
        body = json.load(reply)
    if body["status"] != "success":
        raise RuntimeError(f"{promql}: {body}")
    skip = {"__name__", "job", "instance"}
    return {
        tuple(sorted((k, v) for k, v in item["metric"].items() if k not in skip)): float(item["value"][1])
        for item in body["data"]["result"]
    }
