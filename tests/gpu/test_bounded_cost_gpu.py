"""Bounded cost on the gpu path: thin images, non-finite head outputs, the detection cap, cut JPEGs, EXIF.

Run by `make test-gpu` on a CUDA machine; the server side is in
test_gpu_server.py.
"""

import cv2
import numpy as np
import pytest
import torch

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.gpu.detector import GraphedDetector, kept_detections
from pipeline_models.gpu.postprocess import decode_candidates, yolox_grids
from pipeline_models.gpu.preprocess import decode_images, letterbox_batch
from pipeline_models.image_checks import check_encoded_image
from tests.image_samples import cut_and_patched, with_exif_orientation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = torch.device("cuda")
THIN = [(1, 1), (1, 8192), (8192, 1), (3, 2000), (2000, 3)]


@pytest.mark.parametrize("legacy", [True, False])
def test_thin_images_letterbox_on_the_gpu(legacy):
    images = [torch.full((3, h, w), 200, dtype=torch.uint8, device=DEVICE) for h, w in THIN]
    canvas, meta = letterbox_batch(images, (640, 640), legacy=legacy)
    assert canvas.shape == (len(THIN), 3, 640, 640) and torch.isfinite(canvas.float()).all()
    np.testing.assert_allclose(meta[:, 2].numpy(), [640 / max(hw) for hw in THIN], rtol=1e-6)


def test_thin_jpegs_decode_and_letterbox_on_the_gpu():
    datas = [cv2.imencode(".jpg", np.full((*hw, 3), 90, np.uint8))[1].tobytes() for hw in THIN]
    decoded = decode_images(datas, DEVICE)
    assert [tuple(d.shape[1:]) for d in decoded] == THIN
    canvas, _ = letterbox_batch(decoded, (640, 640))
    assert canvas.shape[0] == len(THIN)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("column", [0, 2, 4, 5])
def test_non_finite_rows_are_never_valid_candidates(bad, column):
    grids = yolox_grids((64, 64), DEVICE)
    raw = torch.zeros((1, len(grids), 6), device=DEVICE)
    raw[0, 10] = torch.tensor([0, 0, 0, 0, 0.9, 0.9])
    raw[0, 30] = torch.tensor([0, 0, 0, 0, 0.9, 0.9])
    raw[0, 30, column] = bad
    boxes, scores, _, valid = decode_candidates(raw, grids, 0.1, 20)
    assert int(valid.sum()) == 1 and torch.isfinite(boxes).all()
    assert float(scores[0, 0]) == pytest.approx(0.81)


def test_box_whose_exp_overflows_is_not_valid():
    grids = yolox_grids((64, 64), DEVICE)
    raw = torch.zeros((1, len(grids), 6), device=DEVICE)
    raw[0, 10] = torch.tensor([0, 0, 200.0, 0, 0.9, 0.9])
    _, _, _, valid = decode_candidates(raw, grids, 0.1, 20)
    assert not bool(valid.any())


def test_kept_detections_keeps_the_highest_scores_up_to_the_cap():
    rows = np.zeros((10, 6), np.float32)
    rows[:, 4] = np.linspace(0.9, 0.5, 10)
    rows[::2, 5] = 1.0  # every other row kept by NMS
    boxes, scores = kept_detections(rows, 3)
    np.testing.assert_allclose(scores, rows[[0, 2, 4], 4])
    assert boxes.shape == (3, 4) and len(kept_detections(rows)[1]) == 5


def test_detector_refuses_a_bad_cap():
    with pytest.raises(ValueError, match="max_detections"):
        GraphedDetector("yolox_tiny", 1, device="cuda", buckets=(1,), cuda_graphs=False, max_detections=0)


def test_exif_orientation_is_ignored_by_nvjpeg_like_the_cpu_path():
    image = np.zeros((20, 40, 3), np.uint8)
    data = with_exif_orientation(cv2.imencode(".jpg", image)[1].tobytes(), 6)
    (decoded,) = decode_images([data], DEVICE)
    assert tuple(decoded.shape) == (3, 20, 40)


def test_cut_jpegs_on_the_gpu_path():
    """nvJPEG decodes a cut-and-patched JPEG without an error; the shared structure check refuses it when it
    has restart markers (without them only the cpu path's libjpeg warning can tell)."""
    frame = cv2.GaussianBlur(
        np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8), (5, 5), 0
    )
    with_rst = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes()
    with pytest.raises(InvalidInputError) as caught:
        check_encoded_image(cut_and_patched(with_rst))
    assert caught.value.reason == Reason.CORRUPT
    plain = cut_and_patched(cv2.imencode(".jpg", frame)[1].tobytes())
    check_encoded_image(plain)  # structurally sound: the missing data is inside the Huffman stream
    (result,) = decode_images([plain], DEVICE)
    print("nvJPEG on a cut JPEG without restart markers:", type(result).__name__)
