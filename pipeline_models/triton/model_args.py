"""What a python model gets from ``initialize(args)``, parsed once, and how it fails its load."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import triton_python_backend_utils as pb_utils

from pipeline_models import frame_tokens
from pipeline_models.settings import Settings, from_parameters


@dataclass(frozen=True)
class ModelArgs:
    """What ``initialize(args)`` gives a model, parsed once.

    Attributes:
        name: the model's name.
        config: the model configuration as a dict (``config.pbtxt`` as JSON).
        version_dir: the directory of the loaded version (``<repository>/<version>``).
        parameters: the config's ``parameters`` as plain strings.
        instance: this instance's name (e.g. ``tracker_0_0``).
    """

    name: str
    config: dict[str, Any]
    version_dir: str
    parameters: dict[str, str]
    instance: str

    def settings(self, cls: type[Settings]) -> Settings:
        """The settings ``cls`` (``pipeline_models.settings``) from the parameters; a missing or bad one
        fails the model load, naming it."""
        return self.build(lambda parameters: from_parameters(cls, parameters))

    def build(self, factory: Callable[[Mapping[str, str]], Any]) -> Any:
        """``factory(parameters)``; a ``ValueError`` fails the model load with the model's name."""
        try:
            return factory(self.parameters)
        except ValueError as exc:
            raise pb_utils.TritonModelException(f"{self.name}: {exc}") from exc

def parse_args(args: Mapping[str, str]) -> ModelArgs:
    """Parses the ``args`` dict the python backend passes to ``initialize``."""
    config = json.loads(args["model_config"])
    parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    version_dir = f"{args['model_repository']}/{args['model_version']}"
    instance = args.get("model_instance_name", args["model_name"])
    return ModelArgs(args["model_name"], config, version_dir, parameters, instance)

def frame_secret(model: ModelArgs) -> bytes:
    """The server's frame-token secret (``frame_tokens.load_secret``); missing, it fails the model load."""
    return model.build(lambda _: frame_tokens.load_secret())

def require_sequence_batching(model: ModelArgs) -> None:
    """Fails the load unless the model is sequence-batched.

    Its state is in-process: the sequence batcher gives each sequence one instance's slot from START to
    END (or idle timeout), so every request of a camera reaches the instance that holds its state.
    """
    if "sequence_batching" not in model.config:
        raise pb_utils.TritonModelException(f"{model.name}: needs a sequence_batching section")

def model_error(message: str) -> Exception:
    """An exception that fails the model load with ``message`` (raise it only in ``initialize``)."""
    return pb_utils.TritonModelException(message)


def require_embedding_width(model: ModelArgs, dim: int) -> None:
    """Fails the load unless the config's EMBEDDINGS output is ``[..., -1]`` or ``[..., dim]`` (the model's D)."""
    dims = next(o["dims"] for o in model.config["output"] if o["name"] == "EMBEDDINGS")
    if int(dims[-1]) not in (-1, dim):
        raise model_error(f"{model.name}: EMBEDDINGS dims {dims} but the model gives D={dim}")


def log_info(message: str) -> None:
    """Logs ``message`` at INFO in tritonserver's log."""
    pb_utils.Logger.log_info(message)


def log_warn(message: str) -> None:
    """Logs ``message`` at WARNING in tritonserver's log (shown without ``--log-info``)."""
    pb_utils.Logger.log_warn(message)
