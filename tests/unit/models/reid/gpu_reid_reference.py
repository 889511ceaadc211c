"""Runs the GPU ReID path on the CPU in the export environment (torch CPU, onnx, onnx2torch, OpenCV):
``python -m tests.unit.models.reid.gpu_reid_reference OUT_DIR FIXTURE`` writes ``OUT_DIR/ref.npz``.

torchvision is absent there; onnx2torch imports it only for its NMS and RoiAlign converters (an OSNet has
neither node), so a stand-in that raises is registered first, as ``pipeline_tools.export_onnx`` does.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np


def _stub_torchvision_if_missing() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return

    def _unavailable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed in the export environment")

    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = _unavailable  # type: ignore[attr-defined]
    pkg = types.ModuleType("torchvision")
    pkg.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = pkg, ops


def main(out_dir: Path, fixture: Path) -> None:
    _stub_torchvision_if_missing()
    import torch

    from pipeline_models.gpu.reid import TorchEmbedder, crop_frames
    from pipeline_models.reid.embedder import Embedder
    from pipeline_models.reid.embedding_step import crop_tracks

    data = np.load(out_dir / "in.npz")
    frames_bgr = [data["frame_a"], data["frame_b"]]
    boxes = [data["boxes_a"], data["boxes_b"]]
    chw = [torch.from_numpy(np.ascontiguousarray(f[:, :, ::-1].transpose(2, 0, 1))) for f in frames_bgr]
    gpu_crops, valids = crop_frames(chw, boxes)
    cpu = [crop_tracks(frame, b, (256, 128)) for frame, b in zip(frames_bgr, boxes)]
    cpu_crops = np.concatenate([c.crops for c in cpu])
    # Frames of other sizes, one with no boxes and one whose boxes all miss it, cropped in one call and
    # one call each: the same rows (the windows are computed for all frames at once).
    small = torch.from_numpy(np.ascontiguousarray(chw[0][:, :300, :400].numpy()))
    mixed = [small, chw[0], small, chw[1], small]
    mixed_boxes = [np.array([[50, 60, 120, 250]], np.float32), boxes[0], np.empty((0, 4), np.float32), boxes[1],
                   np.array([[500, 400, 600, 500]], np.float32)]
    together, together_valid = crop_frames(mixed, mixed_boxes)
    alone = [crop_frames([f], [b]) for f, b in zip(mixed, mixed_boxes)]
    torch_embedder = TorchEmbedder(fixture, device="cpu", max_batch=4, half=False, compiled=False)
    ort_embedder = Embedder(fixture, threads=1)
    np.savez(
        out_dir / "ref.npz",
        gpu_crops=gpu_crops.numpy(),
        cpu_crops=cpu_crops,
        gpu_valid=np.concatenate(valids),
        cpu_valid=np.concatenate([c.valid for c in cpu]),
        torch_emb=torch_embedder.embed(torch.from_numpy(cpu_crops)).numpy(),
        ort_emb=ort_embedder.embed(cpu_crops),
        dims=np.array([torch_embedder.dim, ort_embedder.dim, *torch_embedder.input_hw]),
        networks=np.array([torch_embedder.network, *_fallbacks(fixture, out_dir, cpu_crops)]),
        compile_error=np.array(_failed_compile(fixture)),
        together=together.numpy(),
        alone=torch.cat([crops for crops, _ in alone]).numpy(),
        together_valid=np.concatenate(together_valid),
        alone_valid=np.concatenate([v for _, (v,) in alone]),
        valid_counts=np.array([len(v) for v in together_valid]),
    )


def _fallbacks(fixture: Path, out_dir: Path, crops: np.ndarray) -> list[str]:
    """The network chosen for two ONNXs that are not a torchreid OSNet's export: its initializers renamed
    (the weights do not map), and one ReLU bypassed (they map, the output differs); each must also give
    ONNX Runtime's embeddings of that ONNX."""
    import onnx
    import torch

    from pipeline_models.gpu.reid import TorchEmbedder
    from pipeline_models.reid.embedder import Embedder

    renamed = onnx.load(str(fixture))
    names = {i.name: f"w{n}" for n, i in enumerate(renamed.graph.initializer)}
    for init in renamed.graph.initializer:
        init.name = names[init.name]
    for node in renamed.graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
    bypassed = onnx.load(str(fixture))
    relu = next(n for n in bypassed.graph.node if n.op_type == "Relu" and n.name.startswith("/conv4/"))
    for node in bypassed.graph.node:
        node.input[:] = [relu.input[0] if name == relu.output[0] else name for name in node.input]
    bypassed.graph.node.remove(relu)
    networks = []
    for name, proto in (("renamed", renamed), ("bypassed", bypassed)):
        path = out_dir / f"{name}.onnx"
        onnx.save(proto, str(path))
        embedder = TorchEmbedder(path, device="cpu", max_batch=4, half=False, compiled=False)
        got = embedder.embed(torch.from_numpy(crops)).numpy()
        want = Embedder(path, threads=1).embed(crops)
        networks.append(f"{embedder.network} {float(1 - np.sum(got * want, axis=1).min()):.3g}")
    return networks


def _failed_compile(fixture: Path) -> str:
    """The load error when torch.compile fails (as without a C compiler): ``torch.compile`` replaced by
    one whose compiled model raises at its first pass, as TorchInductor does."""
    import torch

    from pipeline_models.gpu.reid import ReidCompileError, TorchEmbedder

    def failing_compile(model):
        def run(*_args):
            raise RuntimeError("InvalidCxxCompiler: No working C compiler found")

        return run

    real, torch.compile = torch.compile, failing_compile
    try:
        TorchEmbedder(fixture, device="cpu", max_batch=4, half=False, compiled=True)
    except ReidCompileError as exc:
        return str(exc)
    finally:
        torch.compile = real
    return "loaded"


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
