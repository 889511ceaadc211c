"""The gpu profile's ReID path (``pipeline_models.gpu.reid``) against the CPU one, run on the CPU.

PyTorch runs in the export environment (``make export-venv``, through ``gpu_reid_reference``); the
comparisons run here. Real walkers of vtest.avi plus boxes that are degenerate, clipped or outside the frame.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from pipeline_models.reid.crop_geometry import IMAGENET_STD
from tests.unit.models.reid.walkers import FIXTURE, FRAME_A, FRAME_B, WALKERS_A, WALKERS_B
from tests.unit.sample_data import REPO, vtest_frame

EXPORT_PY = REPO / ".cache" / "export-venv" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not FIXTURE.is_file(), reason=f"ReID test model absent ({FIXTURE}); it lives in the shared fixtures"
)
# Boxes the crops must survive: zero size, upside down, NaN, outside, over the edge, one pixel, huge.
ODD_BOXES = [[10, 10, 10, 40], [50, 60, 20, 30], [np.nan, 5, 30, 40], [900, 700, 950, 760],
             [-30, -20, 40, 90], [700, 500, 800, 600], [5.5, 6.5, 6.6, 7.7], [-1e6, -1e6, 1e6, 1e6]]
# cv2.INTER_LINEAR rounds to uint8 with 11-bit fixed-point weights; the GPU crops are exact bilinear values.
# So each pixel may differ by < 1 grey level, i.e. 1 / (255 std) after normalisation (plus float slack).
ONE_GREY_LEVEL = 1.0 / (255.0 * float(IMAGENET_STD.min()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpureid")
    np.savez(
        tmp / "in.npz",
        frame_a=vtest_frame(FRAME_A), frame_b=vtest_frame(FRAME_B),
        boxes_a=np.array(WALKERS_A + ODD_BOXES, np.float32), boxes_b=np.array(WALKERS_B, np.float32),
    )
    assert EXPORT_PY.is_file(), "run `make export-venv`"
    proc = subprocess.run(
        [str(EXPORT_PY), "-m", "tests.unit.models.reid.gpu_reid_reference", str(tmp), str(FIXTURE)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp / "ref.npz"))


def test_gpu_crops_keep_the_cpu_boxes_and_equal_their_pixels(reference):
    np.testing.assert_array_equal(reference["gpu_valid"], reference["cpu_valid"])
    assert reference["gpu_valid"].sum() == len(WALKERS_A) + len(WALKERS_B) + 4  # over the edges, 1 px, huge
    gpu, cpu = reference["gpu_crops"], reference["cpu_crops"]
    assert gpu.shape == cpu.shape == (int(reference["gpu_valid"].sum()), 3, 256, 128)
    diff = np.abs(gpu - cpu)
    assert diff.max() <= ONE_GREY_LEVEL * 1.001, diff.max() / ONE_GREY_LEVEL
    assert diff.mean() < 0.25 * ONE_GREY_LEVEL  # rounding, not a shifted grid (that would move every pixel)


def test_frames_cropped_together_equal_each_cropped_alone(reference):
    # Frames of two sizes, one with no boxes, one whose only box misses it: the windows of all frames are
    # found in one pass and only frames with a crop are gathered from, and nothing else may change.
    assert list(reference["valid_counts"]) == [1, len(WALKERS_A) + len(ODD_BOXES), 0, len(WALKERS_B), 1]
    np.testing.assert_array_equal(reference["together_valid"], reference["alone_valid"])
    assert reference["together_valid"][0] and not reference["together_valid"][-1]  # the last misses its frame
    crops = reference["gpu_valid"].sum() + 1
    assert reference["together"].shape == reference["alone"].shape == (crops, 3, 256, 128)
    np.testing.assert_array_equal(reference["together"], reference["alone"])


def test_onnx2torch_embeddings_equal_onnx_runtime(reference):
    torch_emb, ort_emb = reference["torch_emb"], reference["ort_emb"]
    assert list(reference["dims"]) == [512, 512, 256, 128]
    np.testing.assert_allclose(np.linalg.norm(torch_emb, axis=1), 1.0, atol=1e-5)
    # Both FP32 on the CPU, only the order of the sums differs: a relative error e of the rows gives
    # 1 - cos ~ e^2 / 2 (e ~ 1e-5 after a few dozen layers: ~1e-10), but the unit rows are themselves
    # float32, rounded by ~6e-8 each, so 1 - cos is not resolved below ~1e-7. 1e-6 is ten times that,
    # while a wrong layer (a missed BatchNorm, another padding) costs > 1e-2 (one walker twice: 0.8).
    cosine = np.sum(torch_emb.astype(np.float64) * ort_emb.astype(np.float64), axis=1)
    assert 1 - cosine.min() < 1e-6, 1 - cosine.min()


def test_a_torchreid_osnet_runs_as_ours_and_any_other_onnx_converted(reference):
    # The fixture is torchreid's OSNet x0.25 export: our definition takes its weights (and equals ONNX
    # Runtime, above). Renamed initializers do not map, a bypassed ReLU maps but changes the output: both
    # run as the converted ONNX, and give ONNX Runtime's embeddings of that ONNX (FP32: 1 - cos < 1e-6).
    ours, renamed, bypassed = (str(n) for n in reference["networks"])
    assert ours == "osnet"
    for network in (renamed, bypassed):
        name, one_minus_cos = network.split()
        assert name == "onnx2torch" and float(one_minus_cos) < 1e-6, network



def test_a_failed_compile_fails_the_load_naming_the_setting(reference):
    message = str(reference["compile_error"])
    assert "torch.compile of our OSNet failed" in message and "InvalidCxxCompiler" in message, message
    assert "--set reid_compile=false" in message
