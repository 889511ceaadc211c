"""Letterbox sizes, shared by the CPU (OpenCV) and the GPU (torch) preprocess: pure arithmetic."""

from __future__ import annotations


def letterbox_ratio(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> float:
    """Scale ``r = min(h / H, w / W)`` that fits an ``(H, W)`` image into an ``(h, w)`` input."""
    return min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])


def letterbox_size(image_hw: tuple[int, int], ratio: float) -> tuple[int, int]:
    """Resized ``(int(H r), int(W r))``, each side at least one pixel.

    A thin image (1x8192 into 640x640) would otherwise scale its short side to 0 and the resize fail;
    boxes still map back by dividing by ``r`` (the one-pixel side is stretched by under one pixel).
    """
    return max(int(image_hw[0] * ratio), 1), max(int(image_hw[1] * ratio), 1)
