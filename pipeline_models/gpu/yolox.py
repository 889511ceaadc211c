"""A compact, torch-only YOLOX network (Megvii/ByteTrack layout and parameter names).

Imports nothing but torch, so the GPU detector needs neither ``pixeltable-yolox`` nor its cv2/loguru
dependencies. ``state_dict`` keys match Megvii YOLOX checkpoints (``backbone.backbone.stem.conv.conv.weight``
...), so ByteTrack weights load strictly. Output is the raw head ``(B, A, 5 + C)``: ``(x, y, w, h)`` in
grid units before decoding, then sigmoid objectness and class scores (``decode_in_inference=False``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline_models.gpu.conv_bn import fold_conv_bn

#: (depth, width) of the standard YOLOX sizes (Megvii ``exps/default``; nano/depthwise not supported).
ARCHS: dict[str, tuple[float, float]] = {
    "yolox_x": (1.33, 1.25),
    "yolox_l": (1.0, 1.0),
    "yolox_m": (0.67, 0.75),
    "yolox_s": (0.33, 0.50),
    "yolox_tiny": (0.33, 0.375),
}
IN_CHANNELS = (256, 512, 1024)
STRIDES = (8, 16, 32)


class BaseConv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU, 'same' padding."""

    def __init__(self, cin: int, cout: int, ksize: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ksize, stride, (ksize - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, shortcut: bool, expansion: float = 1.0) -> None:
        super().__init__()
        hidden = int(cout * expansion)
        self.conv1 = BaseConv(cin, hidden, 1, 1)
        self.conv2 = BaseConv(hidden, cout, 3, 1)
        self.use_add = shortcut and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True) -> None:
        super().__init__()
        hidden = int(cout * 0.5)
        self.conv1 = BaseConv(cin, hidden, 1, 1)
        self.conv2 = BaseConv(cin, hidden, 1, 1)
        self.conv3 = BaseConv(2 * hidden, cout, 1, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = cin // 2
        self.conv1 = BaseConv(cin, hidden, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), cout, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [m(x) for m in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth (2x2) then a conv."""

    def __init__(self, cin: int, cout: int, ksize: int) -> None:
        super().__init__()
        self.conv = BaseConv(cin * 4, cout, ksize, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tl, tr = x[..., ::2, ::2], x[..., ::2, 1::2]
        bl, br = x[..., 1::2, ::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat((tl, bl, tr, br), dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        bc, bd = int(width * 64), max(round(depth * 3), 1)
        self.stem = Focus(3, bc, 3)
        self.dark2 = nn.Sequential(BaseConv(bc, bc * 2, 3, 2), CSPLayer(bc * 2, bc * 2, bd))
        self.dark3 = nn.Sequential(BaseConv(bc * 2, bc * 4, 3, 2), CSPLayer(bc * 4, bc * 4, bd * 3))
        self.dark4 = nn.Sequential(BaseConv(bc * 4, bc * 8, 3, 2), CSPLayer(bc * 8, bc * 8, bd * 3))
        self.dark5 = nn.Sequential(
            BaseConv(bc * 8, bc * 16, 3, 2),
            SPPBottleneck(bc * 16, bc * 16),
            CSPLayer(bc * 16, bc * 16, bd, shortcut=False),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class YOLOPAFPN(nn.Module):
    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        c0, c1, c2 = (int(c * width) for c in IN_CHANNELS)
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c2, c1, 1, 1)
        self.C3_p4 = CSPLayer(2 * c1, c1, n, False)
        self.reduce_conv1 = BaseConv(c1, c0, 1, 1)
        self.C3_p3 = CSPLayer(2 * c0, c0, n, False)
        self.bu_conv2 = BaseConv(c0, c0, 3, 2)
        self.C3_n3 = CSPLayer(2 * c0, c1, n, False)
        self.bu_conv1 = BaseConv(c1, c1, 3, 2)
        self.C3_n4 = CSPLayer(2 * c1, c2, n, False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    def __init__(self, num_classes: int, width: float) -> None:
        super().__init__()
        hidden = int(256 * width)
        self.stems = nn.ModuleList(BaseConv(int(c * width), hidden, 1, 1) for c in IN_CHANNELS)

        def branch() -> nn.Sequential:
            return nn.Sequential(BaseConv(hidden, hidden, 3, 1), BaseConv(hidden, hidden, 3, 1))

        self.cls_convs = nn.ModuleList(branch() for _ in IN_CHANNELS)
        self.reg_convs = nn.ModuleList(branch() for _ in IN_CHANNELS)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, num_classes, 1) for _ in IN_CHANNELS)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in IN_CHANNELS)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in IN_CHANNELS)

    def initialize_biases(self, prior_prob: float = 1e-2) -> None:
        """Megvii's prior: objectness and class logits start at ``logit(prior_prob)``."""
        for conv in (*self.cls_preds, *self.obj_preds):
            nn.init.constant_(conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(feats):
            x = self.stems[k](x)
            reg_feat = self.reg_convs[k](x)
            out = torch.cat(
                [
                    self.reg_preds[k](reg_feat),
                    self.obj_preds[k](reg_feat).sigmoid(),
                    self.cls_preds[k](self.cls_convs[k](x)).sigmoid(),
                ],
                1,
            )
            outputs.append(out.flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)


class YOLOX(nn.Module):
    """Backbone + PAFPN (``self.backbone``) and decoupled head (``self.head``): ``(B,3,H,W) -> (B,A,5+C)``."""

    def __init__(self, depth: float, width: float, num_classes: int) -> None:
        super().__init__()
        self.backbone = YOLOPAFPN(depth, width)
        self.head = YOLOXHead(num_classes, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_yolox(arch: str, num_classes: int) -> YOLOX:
    """A YOLOX of a standard size with Megvii's initial biases, in eval mode (random weights)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown YOLOX arch {arch!r}; known: {', '.join(sorted(ARCHS))}")
    model = YOLOX(*ARCHS[arch], num_classes)
    model.head.initialize_biases()
    return model.eval()


def random_yolox(arch: str, num_classes: int, seed: int = 0) -> YOLOX:
    """Random weights for speed benchmarks, the same for a given ``seed`` in every process.

    Objectness and class biases start at 0: with random weights the features fade through the backbone
    and every anchor scores about 0.25, so the boxes mean nothing (see bench/gpu.py for the counts).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_yolox(arch, num_classes)
        model.head.initialize_biases(0.5)
    return model


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Loads a Megvii/ByteTrack checkpoint (``{"model": state_dict}`` or a bare one) strictly."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state, strict=True)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Folds every ``BaseConv``'s BatchNorm into its conv (inference only); returns ``model``."""
    for module in model.modules():
        if isinstance(module, BaseConv) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv, module.bn = fold_conv_bn(module.conv, module.bn), nn.Identity()
    return model
