"""Export a torchreid OSNet checkpoint to the ReID ONNX that ``pipeline_models.reid.embedder`` runs.

``python -m pipeline_tools.export_reid --ckpt CKPT.pth --arch osnet_x0_25 --out reid.onnx``

The network is this project's own OSNet definition (:mod:`pipeline_models.gpu.osnet`, torchreid's parameter
names), so torchreid itself is not needed. The ONNX has input ``images`` float32 ``[N, 3, 256, 128]`` (RGB,
/255, ImageNet mean/std applied by the caller) and output ``output`` float32 ``[N, 512]`` (the features
before torchreid's classifier, eval mode, not normalised), batch axis dynamic. Before the file is written,
ONNX Runtime runs it on random input next to PyTorch; a model whose output differs by more than FP32
rounding can explain is not written (exit 1). Bad input (missing file, unknown arch, a checkpoint of another
network) exits 2. Runs in the export environment (``make export-venv``: torch CPU, onnx, onnxruntime), not in
the serving one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_config.cli_help import DefaultsFormatter
from pipeline_tools import export_onnx
from pipeline_tools.export_onnx import DEFAULT_OPSET

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

#: torchreid's training and test size ``(height, width)``.
DEFAULT_INPUT_HW = (256, 128)
#: The network halves the resolution four times (stem conv, max pool, two transitions).
SPATIAL_STRIDE = 16
#: Parameters of a torchreid checkpoint that export drops: the identity classifier, sized by the training set.
CLASSIFIER_PREFIX = "classifier."
#: Crops of the random check input; a second run with one more checks the dynamic batch axis.
CHECK_BATCH = 2
FP32_UNIT_ROUNDOFF = 2.0**-24


class CheckpointError(ValueError):
    """The checkpoint is not a state dict of the requested OSNet."""


def read_state_dict(ckpt: str | Path) -> dict[str, torch.Tensor]:
    """The parameters of a torchreid checkpoint, ``module.`` prefixes (DataParallel) removed.

    Accepts torchreid's ``{"state_dict": ..., "epoch": ...}`` or a bare state dict. The file is unpickled
    (``weights_only=False``, as torchreid saves extra objects): load only checkpoints you trust.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a checkpoint or holds no state dict.
    """
    import torch

    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle and zip errors of every kind: not a checkpoint
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: neither a state dict nor a dict with 'state_dict'")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_osnet_state(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str) -> list[str]:
    """Load ``state`` into ``model`` strictly; returns the classifier keys it ignored.

    Every parameter and buffer of ``model`` must be present with its shape (``num_batches_tracked``, unused in
    eval mode and absent from checkpoints older than torch 0.4.1, may be missing); keys other than the
    classifier's are an error.

    Raises:
        CheckpointError: naming the missing, unexpected or mis-shaped keys.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    ignored = [k for k in state if k not in expected and k.startswith(CLASSIFIER_PREFIX)]
    unexpected = [k for k in state if k not in expected and not k.startswith(CLASSIFIER_PREFIX)]
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_few(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} keys of another shape: {_few(shapes)}")
    if problems:
        raise CheckpointError(f"not an {arch} checkpoint: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return ignored


def matching_archs(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The OSNet sizes whose parameter names and shapes ``state`` has (classifier and counters aside)."""
    from pipeline_models.gpu.osnet import ARCHS, build_osnet

    found = []
    for arch in sorted(ARCHS):
        expected = {k: v.shape for k, v in build_osnet(arch).state_dict().items() if "num_batches" not in k}
        given = {k: v.shape for k, v in state.items()
                 if not k.startswith(CLASSIFIER_PREFIX) and "num_batches" not in k}
        if given == expected:
            found.append(arch)
    return found


def _few(items: Sequence[str], shown: int = 8) -> str:
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def fp32_bound(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's output on ``x`` and how far another FP32 evaluation of it may differ, per element.

    Every convolution, linear layer and average pool is a sum of ``K`` terms; FP32 summation in any order
    has a relative error of at most ``K * u`` (``u = 2**-24``; Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., eq. 3.5, to first order), so two orders differ by at most twice that, and the
    relative errors of successive layers add at most (ReLU and the gates' sigmoid are 1-Lipschitz). That
    gives ``2 u * sum(K)`` over every such call of the forward pass (an upper bound of the deepest path's),
    taken relative to the magnitude of the last stage: ``|W| @ v + |b|`` of the ``fc`` Linear on the
    pooled features ``v``, through the BatchNorm1d's scale. A worst case, whatever the CPU and the kernels:
    it only catches a model that computes something else.

    Returns:
        ``(output, bound)``, both ``(N, 512)``.
    """
    import torch
    from torch import nn

    terms: list[int] = []
    pooled: list[torch.Tensor] = []

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            terms.append(module.in_channels // module.groups * kh * kw)
        elif isinstance(module, nn.Linear):
            terms.append(module.in_features)
            pooled.append(inputs[0])
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            terms.append(inputs[0].shape[-2] * inputs[0].shape[-1])
        elif isinstance(module, nn.AvgPool2d):
            terms.append(int(module.kernel_size) ** 2)

    kinds = (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d, nn.AvgPool2d)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    linear, norm = model.fc[0], model.fc[1]
    with torch.no_grad():
        scale = norm.weight.abs() / torch.sqrt(norm.running_var + norm.eps)
        magnitude = pooled[-1].abs() @ linear.weight.abs().T + linear.bias.abs()
        magnitude = (magnitude + norm.running_mean.abs()) * scale + norm.bias.abs()
    return out, 2 * FP32_UNIT_ROUNDOFF * sum(terms) * magnitude


def export(model: nn.Module, out: str | Path, input_hw: tuple[int, int], opset: int = DEFAULT_OPSET) -> None:
    """Write the ONNX: input ``images``, output ``output`` ``[N, 512]``, dynamic batch, checked by onnx."""
    with warnings.catch_warnings():
        # The dynamo exporter (torch's new default) is not needed for a static graph; the TorchScript one is
        # what the YOLOX exporter uses too.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
        export_onnx.export(model, out, input_hw, opset)


def check_in_onnx_runtime(
    model: nn.Module, path: str | Path, input_hw: tuple[int, int]
) -> tuple[bool, float, float]:
    """Run the ONNX in ONNX Runtime and the model in PyTorch on the same random input.

    The input has ``CHECK_BATCH + 1`` crops; ONNX Runtime also runs its first ``CHECK_BATCH`` alone, so
    that the batch axis is checked to be dynamic.

    Returns:
        ``(matches, max abs difference, largest allowed)``: ``matches`` when both runs have the expected
        shape and every element is within its :func:`fp32_bound`.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    x = torch.randn(CHECK_BATCH + 1, 3, *input_hw, generator=torch.Generator().manual_seed(0))
    expected, bound = fp32_bound(model, x)
    ref, tol = expected.numpy(), bound.numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    runs = [
        (session.run(["output"], {"images": x[:n].numpy()})[0], n) for n in (CHECK_BATCH, CHECK_BATCH + 1)
    ]
    if any(got.shape != ref[:n].shape for got, n in runs):
        return False, float("inf"), float(tol.max())
    diff = np.concatenate([np.abs(got - ref[:n]) for got, n in runs])
    allowed = np.concatenate([tol[:n] for _, n in runs])
    return bool(np.all(diff <= allowed)), float(diff.max()), float(allowed.max())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    try:
        from pipeline_models.gpu.osnet import ARCHS

        archs = sorted(ARCHS)
    except ModuleNotFoundError:  # no torch: --help still works, and main says where to run it
        archs = None

    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.export_reid",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--ckpt", required=True, help="torchreid OSNet checkpoint (.pth / .pth.tar)")
    parser.add_argument("--arch", required=True, choices=archs, help="the checkpoint's OSNet size")
    parser.add_argument("--out", required=True, help="output .onnx")
    parser.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), default=list(DEFAULT_INPUT_HW),
        help=f"the model's input height and width, multiples of {SPATIAL_STRIDE}",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    return parser.parse_args(argv)


def _run(args: argparse.Namespace) -> int:
    from pipeline_models.gpu.osnet import build_osnet

    input_hw = (int(args.input_size[0]), int(args.input_size[1]))
    if any(v <= 0 or v % SPATIAL_STRIDE for v in input_hw):
        log.error("--input-size must be positive multiples of %d, got %s", SPATIAL_STRIDE, list(input_hw))
        return 2
    out = Path(args.out)
    if not out.parent.is_dir():
        log.error("--out: no directory %s", out.parent)
        return 2
    model = build_osnet(args.arch)
    try:
        state = read_state_dict(args.ckpt)
    except (FileNotFoundError, CheckpointError) as exc:
        log.error("%s", exc)
        return 2
    try:
        ignored = load_osnet_state(model, state, args.arch)
    except CheckpointError as exc:
        log.error("%s", exc)
        fits = matching_archs(state)
        if fits:
            log.error("its names and shapes are those of %s: pass --arch %s", fits[0], fits[0])
        return 2
    if ignored:
        log.info("ignored %d classifier keys (not part of the ReID features): %s", len(ignored), _few(ignored))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        export(model, tmp, input_hw, args.opset)
        matches, diff, allowed = check_in_onnx_runtime(model, tmp, input_hw)
        print(f"ONNX Runtime vs PyTorch: max abs diff {diff:.3g} (FP32 bound up to {allowed:.3g})")
        if not matches:
            log.error("the exported model does not reproduce PyTorch; %s not written", out)
            return 1
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%s, input %dx%d, opset %d)", out, args.arch, *input_hw, args.opset)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)  # --help works without torch
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        log.error("needs torch: run it in the export environment (make export-venv), "
                  ".cache/export-venv/bin/python -m pipeline_tools.export_reid")
        return 2
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())

