"""Export a Megvii/ByteTrack YOLOX checkpoint to a raw-head ONNX (as ByteTrack's ``tools/export_onnx.py``).

``python -m pipeline_tools.export_onnx --ckpt CKPT --arch yolox_x --num-classes 1 --input-size 800 1440
--out model.onnx``

The network comes from ``pixeltable-yolox`` (Apache-2.0, a maintained fork of Megvii YOLOX with the same
parameter names). The ONNX has input ``images`` float32 ``(B, 3, H, W)`` and output ``output``
``(B, A, 5 + C)`` (``decode_in_inference=False``: decode with ``postprocess.decode_yolox``), batch axis
dynamic. Runs in the export environment (``make export-venv``: torch CPU + pixeltable-yolox), not in the
serving one.

``--reference-input X.npy --reference-output Y.npy`` also runs PyTorch on ``X`` (B, 3, H, W) and saves
its output, so the ONNX can be checked against it with ONNX Runtime elsewhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import types
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: (depth, width, depthwise) of the standard YOLOX sizes (Megvii ``exps/default``).
#: The opset both exporters write (ONNX Runtime and TensorRT 10 read it).
DEFAULT_OPSET = 13
ARCHS: dict[str, tuple[float, float, bool]] = {
    "yolox_x": (1.33, 1.25, False),
    "yolox_l": (1.0, 1.0, False),
    "yolox_m": (0.67, 0.75, False),
    "yolox_s": (0.33, 0.50, False),
    "yolox_tiny": (0.33, 0.375, False),
    "yolox_nano": (0.33, 0.25, True),
}


def _stub_torchvision_if_missing() -> None:
    """Let ``yolox`` import without torchvision.

    ``yolox.utils.boxes`` imports torchvision for the NMS of its own post-processing, which export never
    runs; the CPU torch used for export has no matching torchvision. The stub raises if NMS is ever called.
    """
    if importlib.util.find_spec("torchvision") is not None:
        return

    def _unavailable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed in the export environment")

    ops = types.ModuleType("torchvision.ops")
    ops.nms = _unavailable  # type: ignore[attr-defined]
    ops.batched_nms = _unavailable  # type: ignore[attr-defined]
    pkg = types.ModuleType("torchvision")
    pkg.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = pkg
    sys.modules["torchvision.ops"] = ops


def build_model(arch: str, num_classes: int, act: str = "silu"):  # noqa: ANN201 (torch is optional)
    """YOLOX ``nn.Module`` of a standard size, in eval mode, raw head output."""
    _stub_torchvision_if_missing()
    import torch.nn as nn
    from yolox.models import YoloPafpn, YoloxHead, YoloxModule

    depth, width, depthwise = ARCHS[arch]
    in_channels = [256, 512, 1024]
    backbone = YoloPafpn(depth, width, in_channels=in_channels, depthwise=depthwise, act=act)
    head = YoloxHead(num_classes, width, in_channels=in_channels, depthwise=depthwise, act=act)
    model = YoloxModule(backbone, head)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps, module.momentum = 1e-3, 0.03
    model.eval()
    model.head.decode_in_inference = False
    return model


def load_checkpoint(model, ckpt: str | Path) -> None:  # noqa: ANN001
    """Load a Megvii/ByteTrack checkpoint (``{"model": state_dict}`` or a bare state dict), strictly."""
    import torch

    state = torch.load(str(ckpt), map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    model.load_state_dict(state, strict=True)


def export(model, out: str | Path, input_hw: tuple[int, int], opset: int = DEFAULT_OPSET) -> None:  # noqa: ANN001
    """Write ``model`` as ONNX: input ``images`` ``[N, 3, H, W]``, output ``output``, dynamic batch, the
    output's other dims fixed to what the model gives for that input (YOLOX's raw head, OSNet's features)."""
    import onnx
    import torch

    dummy = torch.zeros(1, 3, int(input_hw[0]), int(input_hw[1]))
    with torch.no_grad():
        shape = model(dummy).shape[1:]
        torch.onnx.export(
            model,
            (dummy,),
            str(out),
            input_names=["images"],
            output_names=["output"],
            dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    # The exporter leaves the output's non-batch dims symbolic; they are fixed by the input size.
    proto = onnx.load(str(out))
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    for dim, size in zip(dims[1:], shape, strict=True):
        dim.dim_value = int(size)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.export_onnx", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--ckpt", required=True, help="Megvii/ByteTrack YOLOX checkpoint (.pth / .pth.tar)")
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS))
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), required=True)
    parser.add_argument("--out", required=True, help="output .onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--act", default="silu", choices=("silu", "relu", "lrelu"))
    parser.add_argument("--reference-input", help="(B, 3, H, W) float32 .npy to run through PyTorch")
    parser.add_argument("--reference-output", help="where to save PyTorch's output on --reference-input")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if any(v % 32 for v in args.input_size):
        log.error("--input-size must be multiples of 32, got %s", args.input_size)
        return 2
    import torch

    model = build_model(args.arch, args.num_classes, args.act)
    load_checkpoint(model, args.ckpt)
    export(model, args.out, tuple(args.input_size), args.opset)
    log.info(
        "wrote %s (%s, %d classes, input %dx%d)", args.out, args.arch, args.num_classes, *args.input_size
    )
    if args.reference_input:
        import numpy as np

        x = torch.from_numpy(np.load(args.reference_input).astype(np.float32))
        with torch.no_grad():
            y = model(x).numpy()
        np.save(args.reference_output or str(Path(args.out).with_suffix(".ref.npy")), y)
        log.info("PyTorch reference output %s saved", y.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
