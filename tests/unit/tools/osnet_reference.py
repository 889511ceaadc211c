"""PyTorch side of the ReID export tests; runs in the export environment (torch), driven by test_export_reid.

``python -m tests.unit.tools.osnet_reference DIR [--fixture ONNX]`` reads ``DIR/x.npy`` (``(N, 3, 256, 128)``
crops) and writes into ``DIR``:

- ``ckpt.pth``: a random OSNet x0.25 (batch-norm statistics random too, so folding them matters) saved as
  torchreid saves it (``{"state_dict": ...}``, ``module.`` prefixes, a 1041-identity classifier), with
  ``ckpt_torch.npy`` / ``ckpt_bound.npy``: its PyTorch output on ``x`` and the FP32 bound
  (:func:`pipeline_tools.export_reid.fp32_bound`);
- ``x0_5.pth`` (another OSNet size) and ``resnet.pth`` (a bare state dict of another network);
- with ``--fixture``: ``fixture_torch.npy`` / ``fixture_bound.npy``: our OSNet x0.25 run with the fixture
  ONNX's own weights, and ``fixture_swapped.npy``: the same with two same-shaped layers exchanged (a
  negative control: the comparison must see a wrong mapping);
- ``summary.json``: what was mapped and the result of a refused export.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from pipeline_models.gpu.osnet import build_osnet, from_onnx, onnx_weights, state_from_onnx
from pipeline_tools import export_reid

ARCH = "osnet_x0_25"
CLASSES = 1041  # MSMT17's training identities


def randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = 0.1 * torch.randn(n, generator=generator)
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def save_torchreid_style(model: nn.Module, path: Path, generator: torch.Generator) -> None:
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.classifier.weight"] = 0.01 * torch.randn(CLASSES, 512, generator=generator)
    state["module.classifier.bias"] = torch.zeros(CLASSES)
    torch.save({"state_dict": state, "epoch": 180, "rank1": 0.5, "optimizer": {}}, path)


def fixture_outputs(fixture: Path, x: torch.Tensor, out: Path) -> dict[str, int]:
    model = build_osnet(ARCH)
    proto = onnx.load(str(fixture))
    weights, convs = onnx_weights(proto)
    state, folded = state_from_onnx(weights, convs, model)
    counts = {"named": len([n for n in weights if n in state]), "folded_convs": len(folded)}
    model = from_onnx(proto)  # the same state, loaded, its identity batch norms exact
    y, bound = export_reid.fp32_bound(model, x)
    np.save(out / "fixture_torch.npy", y.numpy())
    np.save(out / "fixture_bound.npy", bound.numpy())
    block = "conv4.1"
    swapped = {**state}
    for suffix in ("conv1.weight", "conv2.weight", "bn.bias"):
        a, b = f"{block}.conv2c.0.{suffix}", f"{block}.conv2d.0.{suffix}"
        swapped[a], swapped[b] = state[b], state[a]
    model.load_state_dict(swapped, strict=True)
    with torch.no_grad():
        np.save(out / "fixture_swapped.npy", model(x).numpy())
    return counts


def refused_export(out: Path, generator: torch.Generator) -> dict[str, object]:
    """Export ``ckpt.pth`` while the ONNX written is another model's: the export must refuse, write nothing."""
    original = export_reid.export
    other = build_osnet(ARCH)
    randomise_batch_norms(other, generator)

    def export_another(_model: nn.Module, path: str | Path, *args: object, **kwargs: object) -> None:
        original(other, path, *args, **kwargs)

    target = out / "refused.onnx"
    export_reid.export = export_another
    try:
        rc = export_reid.main(["--ckpt", str(out / "ckpt.pth"), "--arch", ARCH, "--out", str(target)])
    finally:
        export_reid.export = original
    return {"rc": rc, "written": target.exists(), "left": sorted(p.name for p in out.glob(".refused*"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--fixture", type=Path)
    args = parser.parse_args(argv)
    out: Path = args.dir
    generator = torch.Generator().manual_seed(18)
    x = torch.from_numpy(np.load(out / "x.npy"))
    torch.set_num_threads(1)

    model = build_osnet(ARCH)
    randomise_batch_norms(model, generator)
    save_torchreid_style(model, out / "ckpt.pth", generator)
    y, bound = export_reid.fp32_bound(model, x)
    np.save(out / "ckpt_torch.npy", y.numpy())
    np.save(out / "ckpt_bound.npy", bound.numpy())
    save_torchreid_style(build_osnet("osnet_x0_5"), out / "x0_5.pth", generator)
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1), "fc.weight": torch.zeros(1000, 2048)}
    torch.save(resnet, out / "resnet.pth")
    summary: dict[str, object] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "bn2d_channels": sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)),
        "refused": refused_export(out, generator),
    }
    if args.fixture:
        summary["fixture"] = fixture_outputs(args.fixture, x, out)
    (out / "summary.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
