"""Checks that the detector a running server has loaded has the tensors the profile's config expects.

After ``make engine`` and ``make up``: a plan built from an ONNX with other tensor names, dtypes or sizes
than the ``tensorrt`` profile renders either fails to load (this check then prints Triton's reason) or
serves tensors that the ensembles do not wire; this says which.

Usage: ``python -m pipeline_tools.check_detector --url localhost:8101 [--profile tensorrt]
[--set key=value ...] [--config PATH/config.pbtxt] [--model detector] [--model-version N]``;
exit code 0 when the served model matches, 1 otherwise (each difference named on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_config import paths
from pipeline_config.render import (
    RenderError,
    add_override_argument,
    load_profile,
    parse_overrides,
    render_profile,
)
from pipeline_config.tensor_specs import ModelSpecs, compare_specs, specs_from_config, specs_from_metadata
from pipeline_server.keys import ENV_NAMES, KeysError, load_keys_file

DETECTOR = "detector"


@dataclass(frozen=True)
class ServedModel:
    """What the server reports for one model.

    Attributes:
        ready: whether the model (version) is ready.
        versions: the versions its metadata lists (empty when not ready).
        specs: its tensors (None when not ready).
        reason: the repository index's state and reason when not ready.
    """

    ready: bool
    versions: tuple[str, ...] = ()
    specs: ModelSpecs | None = None
    reason: str = ""


def expected_specs(
    profile: str = paths.DEFAULT_PROFILE,
    overrides: dict[str, str] | None = None,
    config_path: Path | None = None,
    model: str = DETECTOR,
) -> ModelSpecs:
    """The tensors ``model`` should have: from ``config_path`` if given, else the profile rendered in memory."""
    if config_path is not None:
        return specs_from_config(config_path.read_text())
    rendered = render_profile(
        load_profile(profile, overrides or {}), paths.templates_dir()
    )
    return specs_from_config(rendered[model])


def served_model(
    client: grpcclient.InferenceServerClient,
    model: str = DETECTOR,
    version: str = "",
    headers: Mapping[str, str] | None = None,
) -> ServedModel:
    """Readiness, versions and tensors of ``model`` on the server (its repository state when not ready).

    ``headers``: e.g. the gateway's admin key (the detector is an internal model).
    """
    headers = dict(headers) if headers else None
    if not client.is_model_ready(model, version, headers=headers):
        states = [
            entry
            for entry in client.get_model_repository_index(headers=headers, as_json=True).get("models", [])
            if entry.get("name") == model and (not version or entry.get("version") == version)
        ]
        reason = "; ".join(
            f"version {s.get('version', '?')} {s.get('state', 'UNKNOWN')}"
            + (f": {s['reason']}" if s.get("reason") else "")
            for s in states
        )
        return ServedModel(False, reason=reason or "not in the model repository")
    metadata = client.get_model_metadata(model, version, headers=headers, as_json=True)
    return ServedModel(True, tuple(metadata.get("versions", ())), specs_from_metadata(metadata))


def check_served(served: ServedModel, expected: ModelSpecs, model: str = DETECTOR) -> list[str]:
    """Every way ``served`` differs from ``expected``, one sentence each naming the tensor."""
    if not served.ready or served.specs is None:
        return [f"{model} is not ready ({served.reason})"]
    return [f"{model}: {problem}" for problem in compare_specs(expected, served.specs, exact=True)]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="localhost:8101", help="gRPC endpoint (default: localhost:8101)")
    parser.add_argument(
        "--profile", default="tensorrt", help="profile whose config is expected (default: tensorrt)"
    )
    add_override_argument(parser)
    parser.add_argument(
        "--config", type=Path, help="expect this config.pbtxt instead of rendering the profile"
    )
    parser.add_argument("--model", default=DETECTOR, help="model name (default: detector)")
    parser.add_argument("--model-version", default="", help="version to check (default: the server's choice)")
    parser.add_argument(
        "--keys-file", type=Path,
        help="the gateway's keys file: its admin key is sent as x-api-key (default: $PIPELINE_ADMIN_KEY)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        expected = expected_specs(args.profile, parse_overrides(args.overrides), args.config, args.model)
    except (RenderError, KeyError, OSError) as exc:
        print(f"check_detector: error: cannot build the expectation: {exc}", file=sys.stderr)
        return 2
    try:
        admin = load_keys_file(args.keys_file).admin if args.keys_file else os.environ.get(ENV_NAMES["admin"])
    except KeysError as exc:
        print(f"check_detector: error: {exc}", file=sys.stderr)
        return 2
    headers = {"x-api-key": admin} if admin else None
    try:
        with grpcclient.InferenceServerClient(args.url) as client:
            served = served_model(client, args.model, args.model_version, headers)
    except InferenceServerException as exc:
        print(f"check_detector: error: {args.url}: {exc}", file=sys.stderr)
        return 1
    problems = check_served(served, expected, args.model)
    if problems:
        print(
            f"check_detector: {args.model} on {args.url} does not match the expected config:", file=sys.stderr
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    tensors = "; ".join(str(t) for t in (*expected.inputs, *expected.outputs))
    print(f"{args.model} on {args.url} (versions {', '.join(served.versions)}) matches: {tensors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
