"""Paths to the offline sample data fetched by `make data` (Debian opencv-doc) and the models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".cache" / "data"
MODELS = REPO / ".cache" / "models"


def data_path(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `make data`")
    return path


def read_image(name: str) -> np.ndarray:
    image = cv2.imread(str(data_path(name)), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def vtest_frame(index: int) -> np.ndarray:
    """Frame ``index`` of vtest.avi (768x576 BGR)."""
    cap = cv2.VideoCapture(str(data_path("vtest.avi")))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, f"vtest.avi frame {index}"
    return frame
