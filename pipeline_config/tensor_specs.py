"""Tensor names, datatypes and shapes of a model, as a config expects them and as a model file or a
running server has them, and the differences between the two.

Shapes include the batch dimension (``-1`` when the config batches, ``max_batch_size > 0``); ``-1``
anywhere means "any size".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

#: ONNX Runtime element types -> Triton datatypes (those a detector uses).
_ORT_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(bool)": "BOOL",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output.

    Attributes:
        name: tensor name.
        datatype: Triton datatype without ``TYPE_`` (``FP32``, ``UINT8``, ...).
        shape: dims including the batch dim; ``-1`` = any size.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.datatype} [{', '.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class ModelSpecs:
    """A model's inputs and outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def specs_from_config(config_text: str) -> ModelSpecs:
    """The tensors a ``config.pbtxt`` declares, with the batch dim ``-1`` prepended when it batches."""
    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    batch = (-1,) if config.max_batch_size > 0 else ()

    def spec(tensor: Any) -> TensorSpec:
        datatype = model_config_pb2.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        return TensorSpec(tensor.name, datatype, batch + tuple(int(d) for d in tensor.dims))

    return ModelSpecs(tuple(spec(t) for t in config.input), tuple(spec(t) for t in config.output))


def specs_from_metadata(metadata: Mapping[str, Any]) -> ModelSpecs:
    """The tensors of Triton's model metadata (``get_model_metadata(..., as_json=True)``: shapes may be
    strings)."""

    def spec(tensor: Mapping[str, Any]) -> TensorSpec:
        return TensorSpec(tensor["name"], tensor["datatype"], tuple(int(d) for d in tensor.get("shape", ())))

    return ModelSpecs(
        tuple(spec(t) for t in metadata.get("inputs", ())),
        tuple(spec(t) for t in metadata.get("outputs", ())),
    )


def specs_from_onnx(path: Path) -> ModelSpecs:
    """The tensors of an ONNX file (ONNX Runtime on CPU); symbolic dims become ``-1``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def spec(arg: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
        return TensorSpec(arg.name, _ORT_DATATYPES.get(arg.type, arg.type), shape)

    return ModelSpecs(
        tuple(spec(a) for a in session.get_inputs()), tuple(spec(a) for a in session.get_outputs())
    )


def _dims_fit(expected: Sequence[int], actual: Sequence[int], exact: bool) -> bool:
    if len(expected) != len(actual):
        return False
    if exact:
        return tuple(expected) == tuple(actual)
    return all(e == -1 or a == -1 or e == a for e, a in zip(expected, actual))


def compare_specs(expected: ModelSpecs, actual: ModelSpecs, *, exact: bool = True) -> list[str]:
    """The differences between two models' tensors, one sentence each (empty when they match).

    Args:
        expected: what the config wants.
        actual: what the model file or the server has.
        exact: shapes must be equal, ``-1`` included (a served model); False lets ``-1`` on either side
            stand for any size (a model file with dynamic axes).
    """
    problems: list[str] = []
    for kind, want, have in (
        ("input", expected.inputs, actual.inputs),
        ("output", expected.outputs, actual.outputs),
    ):
        by_name = {t.name: t for t in have}
        for tensor in want:
            found = by_name.pop(tensor.name, None)
            if found is None:
                problems.append(f"{kind} {tensor.name!r} is missing")
            elif found.datatype != tensor.datatype:
                problems.append(
                    f"{kind} {tensor.name!r} has datatype {found.datatype}, expected {tensor.datatype}"
                )
            elif not _dims_fit(tensor.shape, found.shape, exact):
                problems.append(
                    f"{kind} {tensor.name!r} has shape {list(found.shape)}, expected {list(tensor.shape)}"
                )
        problems += [f"unexpected {kind} {name!r}" for name in sorted(by_name)]
    return problems
