"""A tiny model repository written by tests: proves the launcher and fixtures without the product models.

Models:
    add_one: stateless python model, ``X`` INT32 [-1] -> ``Y`` = X + 1.
    counter: sequence-batched python model; per correlation ID, ``TOTAL`` = running sum of ``Y``;
        START resets it, END forgets it. Outputs ``STARTED`` (the START flag it saw).
    add_then_count: ensemble add_one -> counter; public ``X`` -> ``TOTAL``, ``STARTED``.
    nbytes: stateless python model, ``IMAGE`` BYTES [1] -> ``N`` INT64 [1] = its length in bytes.
    broken (only with ``broken=True``): a python model whose ``initialize`` raises.
"""

from __future__ import annotations

from pathlib import Path

ADD_ONE_CONFIG = """
name: "add_one"
backend: "python"
max_batch_size: 8
dynamic_batching {}
input [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ -1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

ADD_ONE_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 1)]))
        return responses
"""

COUNTER_CONFIG = """
name: "counter"
backend: "python"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  oldest { max_candidate_sequences: 16 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START bool_false_true: [ false, true ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
input [ { name: "Y" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "TOTAL" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "STARTED" data_type: TYPE_BOOL dims: [ 1 ] }
]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

COUNTER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


def scalar(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]


class TritonPythonModel:
    def initialize(self, args):
        self.totals = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            camera = int(scalar(request, "CORRID"))
            started = bool(scalar(request, "START"))
            if started:
                self.totals[camera] = 0
            y = pb_utils.get_input_tensor_by_name(request, "Y").as_numpy()
            self.totals[camera] = self.totals.get(camera, 0) + int(y.sum())
            total = np.array([[self.totals[camera]]], dtype=np.int64)
            if bool(scalar(request, "END")):
                del self.totals[camera]
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("TOTAL", total), pb_utils.Tensor("STARTED", np.array([[started]]))
            ]))
        return responses
"""

ENSEMBLE_CONFIG = """
name: "add_then_count"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "TOTAL" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "STARTED" data_type: TYPE_BOOL dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    { model_name: "add_one" model_version: -1
      input_map { key: "X" value: "X" } output_map { key: "Y" value: "_Y" } },
    { model_name: "counter" model_version: -1
      input_map { key: "Y" value: "_Y" }
      output_map { key: "TOTAL" value: "TOTAL" } output_map { key: "STARTED" value: "STARTED" } }
  ]
}
"""

NBYTES_CONFIG = """
name: "nbytes"
backend: "python"
max_batch_size: 8
dynamic_batching {}
input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "N" data_type: TYPE_INT64 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

NBYTES_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            n = np.array([[len(data[0])]], dtype=np.int64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("N", n)]))
        return responses
"""

BROKEN_CONFIG = """
name: "broken"
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ -1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

BROKEN_REASON = "broken on purpose: weights file missing"

BROKEN_MODEL = f'''
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("{BROKEN_REASON}")

    def execute(self, requests):
        return []
'''


def _write_model(root: Path, name: str, config: str, model_py: str | None) -> None:
    version = root / name / "1"
    version.mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(config.lstrip())
    if model_py is not None:
        (version / "model.py").write_text(model_py.lstrip())


def write_tiny_repository(root: Path, broken: bool = False) -> Path:
    """Writes the tiny repository into ``root`` (created) and returns it."""
    root.mkdir(parents=True, exist_ok=True)
    _write_model(root, "add_one", ADD_ONE_CONFIG, ADD_ONE_MODEL)
    _write_model(root, "counter", COUNTER_CONFIG, COUNTER_MODEL)
    _write_model(root, "add_then_count", ENSEMBLE_CONFIG, None)
    _write_model(root, "nbytes", NBYTES_CONFIG, NBYTES_MODEL)
    if broken:
        _write_model(root, "broken", BROKEN_CONFIG, BROKEN_MODEL)
    return root
