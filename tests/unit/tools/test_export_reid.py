"""ReID export: our OSNet is torchreid's, and a torchreid checkpoint becomes the ONNX the embedder runs.

PyTorch runs in the export environment (`make export-venv`, through ``tests.unit.tools.osnet_reference``
and the exporter itself); ONNX Runtime runs here, in the serving one. The strongest check loads the shared
fixture ONNX's own weights (torchreid's OSNet x0.25, MSMT17) into our definition and requires the same
output; it skips where the shared fixtures are absent.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline_models.detectors import make_session
from pipeline_models.reid.crops import crop_batch
from pipeline_models.reid.embedder import Embedder
from tests.unit.models.reid.walkers import FIXTURE, FRAME_A, WALKERS_A
from tests.unit.sample_data import REPO, vtest_frame

log = logging.getLogger(__name__)
EXPORT_PY = REPO / ".cache" / "export-venv" / "bin" / "python"
ARCH = "osnet_x0_25"
FEATURES = 512
BN1D_BUFFERS = 2 * FEATURES  # fc's BatchNorm1d running mean and variance: initializers, not parameters
needs_fixture = pytest.mark.skipif(
    not FIXTURE.is_file(), reason=f"ReID test model absent ({FIXTURE}); it lives in the shared fixtures"
)


def in_export_venv(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    assert EXPORT_PY.is_file(), "run `make export-venv`"
    return subprocess.run(
        [str(EXPORT_PY), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def export_reid(*args: str) -> subprocess.CompletedProcess[str]:
    return in_export_venv("-m", "pipeline_tools.export_reid", *args)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """Checkpoints and PyTorch outputs on real walker crops plus one random crop (see osnet_reference)."""
    tmp = tmp_path_factory.mktemp("reid")
    crops = crop_batch(vtest_frame(FRAME_A), WALKERS_A, bgr=True)
    noise = np.random.default_rng(18).standard_normal((1, *crops.shape[1:])).astype(np.float32)
    np.save(tmp / "x.npy", np.concatenate([crops, noise]))
    extra = ["--fixture", str(FIXTURE)] if FIXTURE.is_file() else []
    proc = in_export_venv("-m", "tests.unit.tools.osnet_reference", str(tmp), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, json.loads((tmp / "summary.json").read_text())


@pytest.fixture(scope="module")
def exported(reference) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp, _ = reference
    out = tmp / "reid.onnx"
    proc = export_reid("--ckpt", str(tmp / "ckpt.pth"), "--arch", ARCH, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def ort(path: Path, x: np.ndarray) -> np.ndarray:
    return make_session(path, threads=1).run(["output"], {"images": x})[0]


def float_elements(path: Path) -> int:
    code = ("import sys, numpy as np, onnx; m = onnx.load(sys.argv[1]); "
            "print(sum(int(np.prod(i.dims)) for i in m.graph.initializer if i.data_type == 1 and i.dims))")
    return int(in_export_venv("-c", code, str(path)).stdout)


def test_exports_a_torchreid_checkpoint_and_drops_its_classifier(exported):
    out, proc = exported
    assert "ONNX Runtime vs PyTorch: max abs diff" in proc.stdout
    assert "ignored 2 classifier keys" in proc.stderr and "classifier.weight" in proc.stderr
    assert out.is_file() and not list(out.parent.glob(".reid.onnx*"))  # no temporary file left
    embedder = Embedder(out)  # the serving side's checks at load
    assert embedder.input_hw == (256, 128) and embedder.dim == FEATURES


def test_onnx_runtime_reproduces_pytorch_on_real_crops(reference, exported):
    tmp, _ = reference
    out, _ = exported
    x, torch_out, bound = np.load(tmp / "x.npy"), np.load(tmp / "ckpt_torch.npy"), np.load(tmp / "ckpt_bound.npy")
    got = ort(out, x)
    assert got.shape == torch_out.shape == (len(x), FEATURES)
    diff = np.abs(got - torch_out)
    log.warning("exported OSNet x0.25, ONNX Runtime vs PyTorch: %.3g (FP32 bound %.3g)", diff.max(), bound.max())
    assert np.all(diff <= bound)
    assert np.all(np.abs(ort(out, x[:1]) - torch_out[:1]) <= bound[:1])  # dynamic batch: one crop alone


def test_signature_and_parameter_count(reference, exported):
    """Batch norms folded into the convs: each 2-d one's scale and shift become one conv bias per channel."""
    _, summary = reference
    out, _ = exported
    (inp,), (outp,) = make_session(out).get_inputs(), make_session(out).get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("images", "tensor(float)", [3, 256, 128])
    assert (outp.name, outp.type, outp.shape[1:]) == ("output", "tensor(float)", [FEATURES])
    assert isinstance(inp.shape[0], str) and isinstance(outp.shape[0], str)  # dynamic batch
    assert float_elements(out) == summary["parameters"] - summary["bn2d_channels"] + BN1D_BUFFERS


@needs_fixture
def test_same_signature_and_parameter_count_as_the_fixture(exported):
    out, _ = exported
    ours, theirs = make_session(out), make_session(FIXTURE)
    for a, b in ((ours.get_inputs(), theirs.get_inputs()), (ours.get_outputs(), theirs.get_outputs())):
        assert [(t.name, t.type, t.shape[1:]) for t in a] == [(t.name, t.type, t.shape[1:]) for t in b]
    assert float_elements(out) == float_elements(FIXTURE)


@needs_fixture
def test_our_osnet_with_the_fixtures_weights_is_the_fixture(reference):
    """The fixture (torchreid's own export) and our definition loaded with its weights agree to FP32 rounding."""
    tmp, summary = reference
    assert summary["fixture"]["named"] > 0 and summary["fixture"]["folded_convs"] > 0
    x = np.load(tmp / "x.npy")
    theirs, ours, bound = ort(FIXTURE, x), np.load(tmp / "fixture_torch.npy"), np.load(tmp / "fixture_bound.npy")
    diff = np.abs(theirs - ours)
    log.warning("fixture vs our OSNet x0.25: %.3g (FP32 bound %.3g, outputs up to %.3g)",
                diff.max(), bound.max(), np.abs(theirs).max())
    assert np.all(diff <= bound)
    # Negative control: two same-shaped layers exchanged give an output the comparison rejects.
    assert np.any(np.abs(np.load(tmp / "fixture_swapped.npy") - theirs) > bound)


def test_refuses_to_write_a_model_that_does_not_match(reference):
    _, summary = reference
    assert summary["refused"] == {"rc": 1, "written": False, "left": []}


@pytest.mark.parametrize(
    ("ckpt", "arch", "message"),
    [
        ("absent.pth", ARCH, "checkpoint not found"),
        ("x.npy", ARCH, "not a PyTorch checkpoint"),
        ("ckpt.pth", "osnet_x2_0", "invalid choice: 'osnet_x2_0'"),
        ("resnet.pth", ARCH, "missing keys: conv1.conv.weight"),
        ("x0_5.pth", ARCH, "conv1.conv.weight (32, 3, 7, 7) (expected (16, 3, 7, 7))"),
        ("x0_5.pth", ARCH, "pass --arch osnet_x0_5"),
    ],
    ids=["missing-file", "not-a-checkpoint", "unknown-arch", "other-network", "other-osnet-size", "arch-hint"],
)
def test_bad_input_exits_2_with_a_clear_error(reference, ckpt, arch, message):
    tmp, _ = reference
    out = tmp / f"bad-{ckpt}.onnx"
    proc = export_reid("--ckpt", str(tmp / ckpt), "--arch", arch, "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()


def test_out_in_a_missing_directory_exits_2(reference):
    tmp, _ = reference
    proc = export_reid("--ckpt", str(tmp / "ckpt.pth"), "--arch", ARCH, "--out", str(tmp / "no" / "r.onnx"))
    assert proc.returncode == 2 and "no directory" in proc.stderr, proc.stderr[-2000:]


def test_help_shows_the_defaults():
    proc = export_reid("--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "(default: 13)" in text and "(default: [256, 128])" in text and "osnet_x1_0" in text
