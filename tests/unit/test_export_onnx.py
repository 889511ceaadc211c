"""YOLOX export with the real YOLOX-tiny checkpoint shipped in zamba (1 class, animals, 640x640).

The export runs in the export environment (`make export-venv`); PyTorch's output on a real batch is
saved there and compared here with ONNX Runtime's.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline_models.detectors import YoloxCodec, load_detector, make_session
from pipeline_models.postprocess import decode_yolox
from pipeline_models.preprocess import letterbox
from tests.unit.sample_data import MODELS, REPO, read_image, vtest_frame

log = logging.getLogger(__name__)
EXPORT_PY = REPO / ".cache" / "export-venv" / "bin" / "python"
CKPT = MODELS / "yolox_tiny_640_20220528.pth"


def export(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert EXPORT_PY.is_file(), "run `make export-venv`"
    assert CKPT.is_file(), "run `make .cache/models/yolox_tiny_640_20220528.pth`"
    cmd = [
        str(EXPORT_PY),
        "-m",
        "pipeline_models.export_onnx",
        "--ckpt",
        str(CKPT),
        "--arch",
        "yolox_tiny",
        "--num-classes",
        "1",
        *extra,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    tmp = tmp_path_factory.mktemp("yolox")
    images = [read_image("squirrel_cls.jpg"), vtest_frame(0)]
    batch = np.stack([letterbox(im, (640, 640), legacy=False)[0] for im in images])
    np.save(tmp / "x.npy", batch)
    proc = export(
        tmp,
        "--input-size",
        "640",
        "640",
        "--out",
        str(tmp / "tiny.onnx"),
        "--reference-input",
        str(tmp / "x.npy"),
        "--reference-output",
        str(tmp / "torch.npy"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "tiny.onnx", batch, np.load(tmp / "torch.npy")


def test_onnx_interface_is_bytetracks(exported):
    path, _, _ = exported
    sess = make_session(path)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "images" and out.name == "output"
    assert inp.shape[1:] == [3, 640, 640] and not isinstance(inp.shape[0], int)  # dynamic batch
    assert out.shape[1:] == [8400, 6] and not isinstance(out.shape[0], int)


def test_onnx_runtime_reproduces_pytorch(exported):
    path, batch, torch_out = exported
    ort_out = make_session(path, threads=2).run(None, {"images": batch})[0]
    assert ort_out.shape == torch_out.shape == (2, 8400, 6)
    diff = float(np.abs(ort_out - torch_out).max())
    log.warning("YOLOX-tiny ONNX Runtime vs PyTorch: max abs diff %.3g", diff)
    assert diff < 1e-3
    # Scores (sigmoid outputs) agree tighter still.
    assert float(np.abs(ort_out[..., 4:] - torch_out[..., 4:]).max()) < 1e-4
    # Dynamic batch: a batch of 3 gives each image's output unchanged.
    three = make_session(path).run(None, {"images": np.concatenate([batch, batch[:1]])})[0]
    np.testing.assert_allclose(three[2], ort_out[0], atol=1e-4)


def test_decoded_detections_are_plausible(exported):
    path, batch, _ = exported
    decoded = decode_yolox(make_session(path).run(None, {"images": batch})[0], (640, 640))
    assert np.all(np.isfinite(decoded))
    assert np.all((decoded[..., 4:] >= 0) & (decoded[..., 4:] <= 1))
    det = load_detector(str(path), conf_thresh=0.25, nms_thresh=0.45, legacy=False)
    assert isinstance(det.codec, YoloxCodec) and det.codec.input_hw == (640, 640)
    squirrel = read_image("squirrel_cls.jpg")
    found = det.detect([squirrel])[0]
    log.warning(
        "YOLOX-tiny (zamba animals) on squirrel_cls.jpg: %s",
        np.c_[found.xyxy, found.scores].round(2).tolist(),
    )
    h, w = squirrel.shape[:2]
    assert len(found) >= 1  # the squirrel
    assert np.all(np.isfinite(found.xyxy)) and np.all(found.xyxy >= 0)
    assert np.all(found.xyxy[:, [0, 2]] <= w) and np.all(found.xyxy[:, [1, 3]] <= h)
    assert np.all(found.xyxy[:, 2:] > found.xyxy[:, :2])


def test_rejects_input_size_not_multiple_of_32(tmp_path):
    proc = export(tmp_path, "--input-size", "600", "640", "--out", str(tmp_path / "x.onnx"))
    assert proc.returncode == 2 and "multiples of 32" in proc.stderr
