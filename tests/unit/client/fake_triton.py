"""A stand-in for ``tritonclient.grpc.InferenceServerClient`` (the third-party boundary).

It behaves like the contract's server: a non-START request of an unknown sequence fails with
INVALID_ARG "... start a new sequence ...", END frees the sequence, and each sequence counts its frames.
With ``reid`` its ``pipeline`` has the ``GLOBAL_IDS`` and ``NAMES`` outputs too (ReID on); without, asking
for them is an error, as on Triton.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tritonclient.utils import InferenceServerException

INVALID_ARG = "StatusCode.INVALID_ARGUMENT"
BASE_OUTPUTS = [
    {"name": "TRACK_IDS", "datatype": "INT64", "shape": ["-1", "-1"]},
    {"name": "BOXES", "datatype": "FP32", "shape": ["-1", "-1", "4"]},
    {"name": "SCORES", "datatype": "FP32", "shape": ["-1", "-1"]},
]
REID_OUTPUTS = [
    {"name": "GLOBAL_IDS", "datatype": "INT64", "shape": ["-1", "-1"]},
    {"name": "NAMES", "datatype": "BYTES", "shape": ["-1", "-1"]},
]


@dataclass
class _Result:
    outputs: dict[str, np.ndarray]

    def as_numpy(self, name: str) -> np.ndarray:
        return self.outputs[name]


@dataclass
class FakeTriton:
    """Answers one box per frame whose x is the frame count of the sequence; the ID is fixed at 1."""

    live: dict[int | str, int] = field(default_factory=dict)
    calls: list[tuple[int | str, bool, bool, bytes]] = field(default_factory=list)
    frame_indices: list[int | None] = field(default_factory=list)
    parameters: list[dict[str, object]] = field(default_factory=list)  # every request's parameters
    # Cameras whose START is refused for capacity this many times before one is admitted.
    full_for: dict[int | str, int] = field(default_factory=dict)
    fail_payloads: set[bytes] = field(default_factory=set)
    down: bool = False
    down_after: int | None = None
    # ReID on: GLOBAL_IDS is 100 + the sequence's frame count, NAMES is ``name``; ``identities`` (frame
    # count -> (GLOBAL_IDS, NAMES) arrays) overrides them for a frame, e.g. to answer misaligned outputs.
    reid: bool = False
    name: bytes = b"Alice"
    identities: dict[int, Callable[[], tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    metadata_calls: int = 0
    requested: list[tuple[str, ...]] = field(default_factory=list)
    headers: list[dict[str, str] | None] = field(default_factory=list)  # every call's headers

    def _down(self) -> bool:
        return self.down or (self.down_after is not None and len(self.calls) >= self.down_after)

    def get_model_metadata(self, model_name, model_version="", headers=None, as_json=False, client_timeout=None):
        assert as_json, "the client reads the metadata as JSON"
        self.headers.append(headers)
        self.metadata_calls += 1
        if self._down():
            raise InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")
        outputs = BASE_OUTPUTS + (REID_OUTPUTS if self.reid else [])
        return {"name": model_name, "inputs": [{"name": "IMAGE", "datatype": "BYTES"}], "outputs": outputs}

    def infer(
        self,
        model_name,
        inputs,
        outputs=None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        client_timeout=None,
        parameters=None,
        headers=None,
        **_,
    ):
        self.headers.append(headers)
        if self._down():
            raise InferenceServerException(
                "failed to connect to all addresses", status="StatusCode.UNAVAILABLE"
            )
        (tensor,) = inputs
        assert model_name == "pipeline" and tensor.name() == "IMAGE" and tensor.datatype() == "BYTES"
        assert list(tensor.shape()) == [1, 1]
        payload = tensor._raw_content[4:]  # 4-byte length prefix, then the bytes
        requested = tuple(out.name() for out in outputs or ())
        self.requested.append(requested)
        known = {out["name"] for out in BASE_OUTPUTS + (REID_OUTPUTS if self.reid else [])}
        if set(requested) - known:
            raise InferenceServerException(
                f"unexpected inference output '{min(set(requested) - known)}' for model '{model_name}'",
                status=INVALID_ARG,
            )
        self.calls.append((sequence_id, sequence_start, sequence_end, payload))
        self.frame_indices.append((parameters or {}).get("frame_index"))
        self.parameters.append(dict(parameters or {}))
        if sequence_start and self.full_for.get(sequence_id, 0) > 0:
            self.full_for[sequence_id] -= 1
            raise InferenceServerException(
                f"[capacity] camera {sequence_id}: server full: 1 cameras; retry later", status=INVALID_ARG
            )
        if sequence_start:
            self.live[sequence_id] = 0
        elif sequence_id not in self.live:
            raise InferenceServerException(
                f"[no_sequence] camera {sequence_id}: unknown or reclaimed sequence; start a new sequence",
                status=INVALID_ARG,
            )
        if payload in self.fail_payloads:
            raise InferenceServerException("failed to decode the image", status=INVALID_ARG)
        self.live[sequence_id] += 1
        n = self.live[sequence_id]
        if sequence_end:
            del self.live[sequence_id]
        answer = {
            "TRACK_IDS": np.array([[1]], np.int64),
            "BOXES": np.array([[[n, 0, n + 10, 20]]], np.float32),
            "SCORES": np.array([[0.9]], np.float32),
        }
        if self.reid:
            make = self.identities.get(n, lambda: (np.array([[100 + n]], np.int64), np.array([[self.name]], object)))
            answer["GLOBAL_IDS"], answer["NAMES"] = make()
        return _Result({name: answer[name] for name in requested if name in answer})
