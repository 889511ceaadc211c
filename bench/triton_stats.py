"""Triton's per-model statistics (the statistics extension over gRPC), for the benchmarks."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tritonclient.grpc as grpcclient


@dataclass(frozen=True)
class ModelStats:
    """Triton's cumulative statistics of one model (``get_inference_statistics``).

    Attributes:
        requests: successful requests.
        executions: model executions (batches).
        queue_ns, compute_input_ns, compute_infer_ns, compute_output_ns: summed over requests (a batch's
            time counts once for each of its requests).
        busy_ns: summed over executions (``batch_stats``): the time the model's instances were working.
    """

    requests: int
    executions: int
    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    busy_ns: int = 0

    def __sub__(self, other: ModelStats) -> ModelStats:
        return ModelStats(
            *(getattr(self, f) - getattr(other, f) for f in self.__dataclass_fields__)  # type: ignore[arg-type]
        )

    @property
    def batch(self) -> float:
        """Mean requests per execution."""
        return self.requests / max(self.executions, 1)

    @property
    def queue_ms(self) -> float:
        """Mean queueing milliseconds per request."""
        return self.queue_ns / max(self.requests, 1) / 1e6

    @property
    def compute_ms(self) -> float:
        """Mean compute (input + infer + output) milliseconds per request."""
        return (self.compute_input_ns + self.compute_infer_ns + self.compute_output_ns) / max(self.requests, 1) / 1e6


def model_stats(client: grpcclient.InferenceServerClient) -> dict[str, ModelStats]:
    """Cumulative statistics of every model, from Triton's statistics extension."""
    stats = {}
    for entry in client.get_inference_statistics(as_json=True).get("model_stats", []):
        infer = entry.get("inference_stats", {})

        def ns(key: str, infer: Mapping[str, Any] = infer) -> int:
            return int(infer.get(key, {}).get("ns", 0))

        stats[entry["name"]] = ModelStats(
            requests=int(infer.get("success", {}).get("count", 0)),
            executions=int(entry.get("execution_count", 0)),
            queue_ns=ns("queue"),
            compute_input_ns=ns("compute_input"),
            compute_infer_ns=ns("compute_infer"),
            compute_output_ns=ns("compute_output"),
            busy_ns=sum(
                int(batch.get(key, {}).get("ns", 0))
                for batch in entry.get("batch_stats", [])
                for key in ("compute_input", "compute_infer", "compute_output")
            ),
        )
    return stats


def metric_total(metrics_url: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (every label set) at ``metrics_url``."""
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    )
