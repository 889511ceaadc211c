"""A BatchNorm2d folded into the conv before it, for inference: the one copy of that arithmetic (YOLOX and
OSNet fold theirs at load)."""

from __future__ import annotations

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing ``bn(conv(x))`` in eval mode for ``conv`` without one: its weight scaled by
    ``scale = gamma / sqrt(var + eps)``, the bias ``beta - mean * scale``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).to(conv.weight.device)  # fmt: skip
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
    return fused
