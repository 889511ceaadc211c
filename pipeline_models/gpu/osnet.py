"""OSNet (Zhou et al., *Omni-Scale Feature Learning for Person Re-Identification*, ICCV 2019), inference only.

Written for this project after torchreid's ``torchreid/models/osnet.py`` (KaiyangZhou/deep-person-reid,
MIT License, Copyright (c) 2018 Kaiyang Zhou; read at ``f8cd150``): the same layers, in the same order and
under the same parameter names, so a torchreid checkpoint's state dict loads unchanged. Only what embedding
needs is kept: the backbone and the ``fc`` layer (Linear + BatchNorm1d + ReLU), whose output is the ReID
feature torchreid returns in eval mode; the identity classifier (sized by the training set) and the
instance-norm variant (``osnet_ibn``) are not defined.

:func:`from_onnx` loads a torchreid OSNet ONNX's weights back into this definition (the gpu profile's ReID
runs it as CUDA graphs, which the generic ONNX conversion cannot be captured into). Needs torch: the export
environment (``make export-venv``) and the gpu profile's.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline_models.gpu.conv_bn import fold_conv_bn

#: Channel widths (stem, stage 2, stage 3, stage 4) of torchreid's OSNet sizes; two blocks per stage.
ARCHS: dict[str, tuple[int, int, int, int]] = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
}
FEATURE_DIM = 512
BLOCKS_PER_STAGE = 2
BOTTLENECK_REDUCTION = 4
GATE_REDUCTION = 16


class ConvBN(nn.Module):
    """``conv`` (no bias) then ``bn``, ReLU unless ``relu=False`` (torchreid's ConvLayer / Conv1x1 /
    Conv1x1Linear: the same parameter names)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int = 0, relu: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LightConv3x3(nn.Module):
    """Pointwise ``conv1`` (linear), then depthwise 3x3 ``conv2``, ``bn``, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Channel weights from the input itself: global average, ``fc1``, ReLU, ``fc2``, sigmoid; ``x * w``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // GATE_REDUCTION, 1, bias=True)
        self.fc2 = nn.Conv2d(channels // GATE_REDUCTION, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.global_avgpool(x)))))


class OSBlock(nn.Module):
    """Omni-scale residual block: four streams of 1 to 4 LightConv3x3 (receptive fields 3 to 9), each
    weighted by one shared channel gate, summed, projected by ``conv3``; ``downsample`` projects the
    identity when the width changes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_out // BOTTLENECK_REDUCTION
        self.conv1 = ConvBN(c_in, mid)
        self.conv2a = LightConv3x3(mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBN(mid, c_out, relu=False)
        self.downsample = ConvBN(c_in, c_out, relu=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        streams = (self.conv2a(x1), self.conv2b(x1), self.conv2c(x1), self.conv2d(x1))
        x2 = self.gate(streams[0]) + self.gate(streams[1]) + self.gate(streams[2]) + self.gate(streams[3])
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(x2) + identity)


def _stage(c_in: int, c_out: int, reduce: bool) -> nn.Sequential:
    """Blocks of one stage; ``reduce`` appends torchreid's transition (1x1 conv + 2x2 average pool)."""
    layers: list[nn.Module] = [OSBlock(c_in, c_out)]
    layers += [OSBlock(c_out, c_out) for _ in range(BLOCKS_PER_STAGE - 1)]
    if reduce:
        layers.append(nn.Sequential(ConvBN(c_out, c_out), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """OSNet feature extractor: ``(N, 3, H, W)`` normalised RGB -> ``(N, 512)`` ReID features (torchreid's
    eval-mode output: before the classifier, not L2-normalised)."""

    def __init__(self, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.conv1 = ConvBN(3, c0, kernel=7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c0, c1, reduce=True)
        self.conv3 = _stage(c1, c2, reduce=True)
        self.conv4 = _stage(c2, c3, reduce=False)
        self.conv5 = ConvBN(c3, c3)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c3, FEATURE_DIM), nn.BatchNorm1d(FEATURE_DIM), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.maxpool(self.conv1(x))))))
        return self.fc(torch.flatten(self.global_avgpool(x), 1))


def build_osnet(arch: str) -> OSNet:
    """An OSNet of one of :data:`ARCHS`, in eval mode, with torch's default initialisation.

    Raises:
        KeyError: an unknown ``arch``.
    """
    if arch not in ARCHS:
        raise KeyError(f"unknown OSNet arch {arch!r}; known: {sorted(ARCHS)}")
    return OSNet(ARCHS[arch]).eval()


class NotOSNetError(ValueError):
    """An ONNX whose weights are not one of :data:`ARCHS`' OSNets, as torchreid's export names them."""


def module_path(node_name: str) -> str:
    """``/conv2/conv2.0/conv2a/conv2/Conv`` -> ``conv2.0.conv2a.conv2`` (the exporter's scope names)."""
    return ".".join(part.rsplit(".", 1)[-1] for part in node_name.strip("/").split("/")[:-1])


def state_from_onnx(
    weights: dict[str, np.ndarray], convs: Iterable[tuple[str, str, str]], model: OSNet
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``model``'s state dict filled from a torchreid OSNet ONNX, whose 2-d batch norms are folded into convs.

    Named initializers (the convs without batch norm, the gates, ``fc``) map by name. A folded conv maps by
    the module scope of its node's name; its bias becomes the following batch norm's shift, with that batch
    norm the identity (scale 1, mean 0, variance 1: :func:`load_onnx_state` sets its ``eps`` to 0).

    Args:
        weights: the ONNX initializers by name.
        convs: ``(node name, weight name, bias name or "")`` of every ``Conv`` node.
        model: the OSNet to fill (not modified).

    Returns:
        the state dict and the names of those identity batch norms.

    Raises:
        NotOSNetError: a key left unfilled or filled twice, a float initializer unused, or a shape that
            differs.
    """
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    folded: list[str] = []

    def put(key: str, value: np.ndarray | torch.Tensor) -> None:
        if key not in expected or key in state:
            raise NotOSNetError(f"{key}: {'filled twice' if key in state else 'not an OSNet parameter'}")
        tensor = torch.as_tensor(np.array(value)) if isinstance(value, np.ndarray) else value
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise NotOSNetError(f"{key}: shape {tuple(tensor.shape)}, OSNet's is {tuple(expected[key].shape)}")
        state[key] = tensor

    for name, value in weights.items():
        if name in expected:
            put(name, value)
            used.add(name)
    for node, weight, bias in convs:
        if weight in expected or weight in used:
            continue
        if not bias:
            raise NotOSNetError(f"{node}: a conv without batch norm outside torchreid's names")
        conv = module_path(node)
        bn = conv.rsplit(".", 1)[0] + ".bn"
        put(f"{conv}.weight", weights[weight])
        shift = torch.as_tensor(np.array(weights[bias]))
        put(f"{bn}.bias", shift)
        put(f"{bn}.weight", torch.ones_like(shift))
        put(f"{bn}.running_mean", torch.zeros_like(shift))
        put(f"{bn}.running_var", torch.ones_like(shift))
        put(f"{bn}.num_batches_tracked", expected[f"{bn}.num_batches_tracked"])
        used.update((weight, bias))
        folded.append(bn)
    for key, value in expected.items():  # batch norms' counters: not in an ONNX file, unused in eval mode
        if key.endswith("num_batches_tracked") and key not in state:
            put(key, value)
    unused = [n for n, w in weights.items() if n not in used and w.dtype == np.float32 and w.ndim > 0]
    if unused:
        raise NotOSNetError(f"initializers no OSNet parameter takes: {unused[:5]}")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise NotOSNetError(f"OSNet parameters the ONNX lacks: {missing[:5]}")
    return state, folded


def load_onnx_state(weights: dict[str, np.ndarray], convs: list[tuple[str, str, str]]) -> OSNet:
    """The OSNet of :data:`ARCHS` whose shapes the ONNX's weights fill (:func:`state_from_onnx`), loaded.

    Raises:
        NotOSNetError: no arch takes them (the error of the arch whose stem width matches, if one does).
    """
    stem = weights[convs[0][1]].shape[0] if convs and convs[0][1] in weights else None
    errors = {}
    for arch in ARCHS:
        model = build_osnet(arch)
        try:
            state, folded = state_from_onnx(weights, convs, model)
        except NotOSNetError as exc:
            errors[arch] = exc
            continue
        model.load_state_dict(state, strict=True)
        for bn in folded:
            model.get_submodule(bn).eps = 0.0  # (x - 0) / sqrt(1 + 0) * 1 + b is exactly x + b, the conv's bias
        return model
    matching = [a for a, c in ARCHS.items() if c[0] == stem]
    raise NotOSNetError(str(errors[matching[0]]) if matching else f"stem of {stem} channels: not an OSNet")


def onnx_weights(proto) -> tuple[dict[str, np.ndarray], list[tuple[str, str, str]]]:
    """An ``onnx.ModelProto``'s initializers by name, and ``(node name, weight, bias or "")`` of its convs."""
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    convs = [
        (node.name, node.input[1], node.input[2] if len(node.input) > 2 else "")
        for node in proto.graph.node if node.op_type == "Conv"
    ]  # fmt: skip
    return weights, convs


def from_onnx(proto) -> OSNet:
    """Our OSNet with the weights of a torchreid OSNet ONNX (``onnx.ModelProto``), in eval mode.

    Raises:
        NotOSNetError: the ONNX's weights are not an OSNet's under torchreid's names.
    """
    return load_onnx_state(*onnx_weights(proto)).eval()


def fold_batch_norms(model: OSNet) -> OSNet:
    """Every 2-d batch norm folded into the conv before it (inference only); returns ``model``."""
    for module in model.modules():
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv, module.bn = fold_conv_bn(module.conv, module.bn), nn.Identity()
        elif isinstance(module, LightConv3x3) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv2, module.bn = fold_conv_bn(module.conv2, module.bn), nn.Identity()
    return model
