"""Installs the fake ``triton_python_backend_utils`` once, and loads ``model.py`` files from the repository."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from pipeline_config import paths
from pipeline_models import frame_tokens
from tests.adapters import fake_pb_utils

sys.modules.setdefault("triton_python_backend_utils", fake_pb_utils)
# What the launcher gives every model process (tests/adapters/test_frame_tokens.py uses it to sign).
os.environ.setdefault(frame_tokens.SECRET_ENV, frame_tokens.new_secret())

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
#: Where the models run from: the rendered cpu repository (``make setup``), which links the weights.
SERVED = paths.profile_repository(paths.DEFAULT_PROFILE)


def rendered_config(model: str) -> dict:
    """The committed ``config.pbtxt`` of a model as the JSON dict Triton hands to ``initialize``."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((REPOSITORY / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


@pytest.fixture
def load_model():
    """Returns ``load(model_name, **parameter_overrides)`` -> an initialised ``TritonPythonModel``."""

    def load(model: str, **overrides: str):
        spec = importlib.util.spec_from_file_location(f"{model}_model", REPOSITORY / model / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = rendered_config(model)
        for key, value in overrides.items():
            config.setdefault("parameters", {})[key] = {"string_value": str(value)}
        instance = module.TritonPythonModel()
        assert (SERVED / model).is_dir(), f"{SERVED / model} is missing: run `make setup` (it renders the cpu repository)"
        instance.initialize(fake_pb_utils.model_args(model, config, str(SERVED / model)))
        return instance

    return load
