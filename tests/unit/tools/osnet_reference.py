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
from onnx import numpy_helper
from torch import nn

from pipeline_tools import export_reid
from pipeline_tools.osnet import build_osnet

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


def _module_path(node_name: str) -> str:
    """``/conv2/conv2.0/conv2a/conv2/Conv`` -> ``conv2.0.conv2a.conv2`` (the exporter's scope names)."""
    return ".".join(part.rsplit(".", 1)[-1] for part in node_name.strip("/").split("/")[:-1])


def state_from_onnx(path: Path, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Our state dict filled from a torchreid OSNet ONNX, whose 2-d batch norms are folded into the convs.

    Named initializers (the convs without batch norm, the gates, ``fc``) map by name. A folded conv maps by
    the module scope in its node's name; its bias becomes the following batch norm's shift, with that batch
    norm set to the identity (scale 1, mean 0, variance 1; the caller sets ``eps = 0``).

    Raises:
        AssertionError: a key left unfilled or filled twice, an initializer unused, or a shape that differs.
    """
    proto = onnx.load(str(path))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def put(key: str, value: torch.Tensor) -> None:
        assert key in expected and key not in state, key
        assert tuple(value.shape) == tuple(expected[key].shape), (key, value.shape, expected[key].shape)
        state[key] = value

    for name, value in weights.items():
        if name in expected:
            put(name, value)
            used.add(name)
    folded = 0
    for node in proto.graph.node:
        if node.op_type != "Conv" or node.input[1] in expected or node.input[1] in used:
            continue
        conv = _module_path(node.name)
        bn = conv.rsplit(".", 1)[0] + ".bn"
        put(f"{conv}.weight", weights[node.input[1]])
        bias = weights[node.input[2]]
        put(f"{bn}.bias", bias)
        put(f"{bn}.weight", torch.ones_like(bias))
        put(f"{bn}.running_mean", torch.zeros_like(bias))
        put(f"{bn}.running_var", torch.ones_like(bias))
        put(f"{bn}.num_batches_tracked", expected[f"{bn}.num_batches_tracked"])
        used.update(node.input[1:3])
        folded += 1
    for key, value in expected.items():  # BatchNorm1d's counter: not in an ONNX file, unused in eval mode
        if key.endswith("num_batches_tracked") and key not in state:
            put(key, value)
    unused = [n for n, w in weights.items() if n not in used and w.dtype == torch.float32]
    assert not unused, unused
    assert set(state) == set(expected), sorted(set(expected) - set(state))[:10]
    return state, {"named": len([n for n in weights if n in expected]), "folded_convs": folded}


def identity_batch_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 0.0  # (x - 0) / sqrt(1 + 0) * 1 + b is then exactly x + b, as the folded conv's bias


def fixture_outputs(fixture: Path, x: torch.Tensor, out: Path) -> dict[str, int]:
    model = build_osnet(ARCH)
    state, counts = state_from_onnx(fixture, model)
    model.load_state_dict(state, strict=True)
    identity_batch_norms(model)
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
