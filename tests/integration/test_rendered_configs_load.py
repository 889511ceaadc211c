"""Every python-backend profile's rendered configs load in a real tritonserver and the ensembles wire up.

The python models here are stand-ins that answer zeros shaped by their own config: this checks the
configs (dtypes, dims, ensemble maps, sequence-batcher controls) as Triton itself validates them, not the
product models (the product integration tests use the real ``model.py`` adapters).
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_models.render_configs import render
from tests.integration.conftest import ServerFactory

STANDIN_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"]),
                         [0 if d == -1 else d for d in o["dims"]]) for o in config["output"]]

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(name, np.zeros([1, *dims], dtype))
                                            for name, dtype, dims in self.outputs]) for _ in requests]
"""


@pytest.fixture(scope="module", params=["cpu", "yolox-cpu"])
def rendered_server(request, triton_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory):
    out = render(request.param, tmp_path_factory.mktemp(f"rendered-{request.param}"))
    for config in out.glob("*/config.pbtxt"):
        if 'backend: "python"' in config.read_text():
            adapter = config.parent / "1" / "model.py"
            adapter.unlink()  # a symlink to the committed adapter: never write through it
            adapter.write_text(STANDIN_MODEL)
    return triton_factory(out)


def infer(url: str, model: str, **sequence):
    client = grpcclient.InferenceServerClient(url)
    image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[b"\xff\xd8 not decoded by the stand-ins"]], dtype=np.object_))
    return client.infer(model, [image], **sequence)


def test_every_model_is_ready(rendered_server):
    client = grpcclient.InferenceServerClient(rendered_server.grpc_url)
    for model in ("preprocess", "detector", "postprocess", "tracker", "pipeline", "detect"):
        assert client.is_model_ready(model), model


def test_pipeline_outputs_and_sequence_controls(rendered_server):
    result = infer(rendered_server.grpc_url, "pipeline", sequence_id=7, sequence_start=True)
    assert result.as_numpy("TRACK_IDS").dtype == np.int64
    assert result.as_numpy("BOXES").shape == (1, 0, 4)
    assert result.as_numpy("SCORES").dtype == np.float32
    infer(rendered_server.grpc_url, "pipeline", sequence_id=7, sequence_end=True)
    with pytest.raises(InferenceServerException, match="START"):
        infer(rendered_server.grpc_url, "pipeline", sequence_id=8)


def test_detect_is_stateless(rendered_server):
    result = infer(rendered_server.grpc_url, "detect")
    assert result.as_numpy("BOXES").shape == (1, 0, 4)
    assert result.as_numpy("SCORES").shape == (1, 0)
