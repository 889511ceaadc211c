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
FP32_UNIT_ROUNDOFF = 2.0**-24
_CONV_REDUCTIONS = """
import sys, numpy as np, onnx
model = onnx.load(sys.argv[1])
weights = {w.name: w.dims for w in model.graph.initializer}
print(sum(int(np.prod(weights[n.input[1]][1:])) for n in model.graph.node if n.op_type == "Conv"))
"""


def export(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert EXPORT_PY.is_file(), "run `make export-venv`"
    assert CKPT.is_file(), "run `make .cache/models/yolox_tiny_640_20220528.pth`"
    cmd = [
        str(EXPORT_PY),
        "-m",
        "pipeline_tools.export_onnx",
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


def fp32_reorder_bounds(path: Path, reference: np.ndarray) -> tuple[float, float]:
    """How far two FP32 evaluations of the network may differ when they sum in different orders.

    Each convolution output is a sum of ``K = C_in/groups * kh * kw`` products; FP32 summation in any order
    has a relative error of at most ``K * u`` (``u = 2**-24``; Higham, *Accuracy and Stability of
    Numerical Algorithms*, 2nd ed., eq. 3.5, to first order), so two orders differ by at most twice that.
    With batch norm folded and 1-Lipschitz-ish activations (SiLU; sigmoid's slope is at most 1/4) the
    relative errors of the layers add at most, which gives ``2 u * sum(K)`` of the output magnitude
    (``sum(K)`` over every Conv of the file, 35700 for YOLOX-tiny: an upper bound of the deepest path's).
    A worst case, so it holds whatever the CPU and the ONNX Runtime / PyTorch kernels (the 1.6e-4 score
    difference an AMD EPYC measured is ~100x under it); it is loose by design and only catches an export
    that computes something else, not FP32 noise.

    Returns:
        ``(regression bound, score bound)``: box outputs relative to their largest magnitude; scores
        through the sigmoid from the largest logit magnitude.
    """
    proc = subprocess.run([str(EXPORT_PY), "-c", _CONV_REDUCTIONS, str(path)], capture_output=True, text=True,
                          timeout=120, check=True)
    relative = 2 * FP32_UNIT_ROUNDOFF * int(proc.stdout)
    scores = np.clip(reference[..., 4:].astype(np.float64), 1e-7, 1 - 1e-7)
    logits = np.abs(np.log(scores / (1 - scores))).max()
    return relative * float(np.abs(reference[..., :4]).max()), 0.25 * relative * float(logits)


def test_onnx_runtime_reproduces_pytorch(exported):
    path, batch, torch_out = exported
    ort_out = make_session(path, threads=2).run(None, {"images": batch})[0]
    assert ort_out.shape == torch_out.shape == (2, 8400, 6)
    reg_bound, score_bound = fp32_reorder_bounds(path, torch_out)
    reg_diff = float(np.abs(ort_out[..., :4] - torch_out[..., :4]).max())
    score_diff = float(np.abs(ort_out[..., 4:] - torch_out[..., 4:]).max())
    log.warning(
        "YOLOX-tiny ONNX Runtime vs PyTorch: boxes %.3g (FP32 bound %.3g), scores %.3g (bound %.3g)",
        reg_diff, reg_bound, score_diff, score_bound,
    )
    assert reg_diff <= reg_bound and score_diff <= score_bound
    # Dynamic batch: a batch of 3 gives each image's output unchanged (within the same bound: ONNX Runtime
    # may pick other kernels, so another summation order, for another batch size).
    three = make_session(path).run(None, {"images": np.concatenate([batch, batch[:1]])})[0]
    assert float(np.abs(three[2, :, :4] - ort_out[0, :, :4]).max()) <= reg_bound
    assert float(np.abs(three[2, :, 4:] - ort_out[0, :, 4:]).max()) <= score_bound


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
