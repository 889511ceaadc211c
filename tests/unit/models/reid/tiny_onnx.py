"""Tiny ONNX models written as raw protobuf (the ``onnx`` package is not a dependency), for the embedder's
load checks: ``Flatten`` makes an ``[N, 3, H, W] -> [N, 3*H*W]`` "embedding" whose values are known."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

FLOAT, DOUBLE = 1, 11
Dim = int | str


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, shape: list[Dim]) -> bytes:
    dims = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _node(op: str, inputs: list[str], outputs: list[str], int_attrs: dict[str, int] | None = None) -> bytes:
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs) + _bytes(4, op)
    for name, value in (int_attrs or {}).items():
        body += _bytes(5, _bytes(1, name) + _int(3, value) + _int(20, 2))
    return body


def write_model(
    path: Path,
    input_shape: list[Dim],
    outputs: list[tuple[str, int, list[Dim]]],
    nodes: list[bytes],
    input_type: int = FLOAT,
) -> Path:
    """An opset-13 model with input ``x`` and the given nodes and outputs ``(name, type, shape)``."""
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _bytes(2, "tiny")
        + _bytes(11, _value_info("x", input_type, input_shape))
    )
    graph += b"".join(_bytes(12, _value_info(*o)) for o in outputs)
    model = _int(1, 8) + _bytes(2, "tests") + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 13))
    path.write_bytes(model)
    return path


def flatten_model(path: Path, input_shape: Sequence[Dim] = ("N", 3, 8, 4), input_type: int = FLOAT) -> Path:
    """``y = Flatten(x)``: ``[N, C, H, W] -> [N, C*H*W]``."""
    rest = input_shape[1:]
    dim: Dim = int(np.prod(rest)) if all(isinstance(d, int) for d in rest) else "D"
    return write_model(
        path,
        list(input_shape),
        [("y", input_type, [input_shape[0], dim])],
        [_node("Flatten", ["x"], ["y"])],
        input_type,
    )


def identity_model(path: Path, input_shape: list[Dim]) -> Path:
    """``y = x`` (an output of the input's rank)."""
    return write_model(path, input_shape, [("y", FLOAT, input_shape)], [_node("Identity", ["x"], ["y"])])


def double_output_model(path: Path) -> Path:
    """``y = Cast<double>(Flatten(x))``: a float64 output."""
    nodes = [_node("Flatten", ["x"], ["f"]), _node("Cast", ["f"], ["y"], {"to": DOUBLE})]
    return write_model(path, ["N", 3, 8, 4], [("y", DOUBLE, ["N", 96])], nodes)


def two_output_model(path: Path) -> Path:
    """Outputs ``y = Flatten(x)`` and ``z = Flatten(x)`` again."""
    nodes = [_node("Flatten", ["x"], ["y"]), _node("Flatten", ["x"], ["z"])]
    return write_model(path, ["N", 3, 8, 4], [("y", FLOAT, ["N", 96]), ("z", FLOAT, ["N", 96])], nodes)
