"""Reading the server's ``/metrics`` in tests."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Mapping

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics_url: str) -> Samples:
    """The server's ``/metrics`` as (name, sorted labels) -> value."""
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = tuple(sorted(LABEL.findall(match.group(2) or "")))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def finished(samples: Samples, model: str) -> float:
    """Requests ``model`` has finished, succeeded or failed."""
    return sum(
        value(samples, f"nv_inference_request_{outcome}", model=model, version="1") for outcome in ("success", "failure")
    )


def settled(
    metrics_url: str,
    requests: Mapping[str, float],
    timeout_s: float = 10.0,
    counts: Mapping[tuple[str, tuple[tuple[str, str], ...]], float] | None = None,
) -> Samples:
    """The metrics once each model in ``requests`` has finished that many requests in all, and each series
    in ``counts`` (name, labels) has reached its value.

    A client can have its answer a moment before the metrics count it: the tracker answers first and
    updates its metrics after, Triton counts a python model's requests once its ``execute`` has returned,
    the ensemble's once its answer is on the way, and stage durations are observed by a thread of their
    own (``custom_metrics.DEFERRED``). After ``timeout_s`` the last reading is returned as it is.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(metrics_url)
        done = all(finished(samples, m) >= n for m, n in requests.items()) and all(
            samples.get(series, 0.0) >= n for series, n in (counts or {}).items()
        )
        if done or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)
