"""The ONNX Runtime ReID embedder: load-time checks on tiny models, chunking and normalisation, and the real
OSNet x0.25 fixture on walkers of the sample video."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.reid.crops import crop_batch
from pipeline_models.reid.embedder import Embedder, ReidModelError
from pipeline_models.reid.unit_vectors import normalise_rows
from tests.unit.models.reid import tiny_onnx
from tests.unit.models.reid.walkers import FRAME_A, FRAME_B, WALKERS_A, WALKERS_B
from tests.unit.sample_data import vtest_frame


def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 4)).astype(np.float32)


def test_normalise_rows():
    out = normalise_rows([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    assert out.dtype == np.float32 and normalise_rows(np.empty((0, 5))).shape == (0, 5)


def test_embeddings_are_the_models_output_normalised_and_chunking_changes_nothing(tmp_path):
    path = tiny_onnx.flatten_model(tmp_path / "flat.onnx")
    embedder = Embedder(path, max_batch=2)
    assert embedder.input_hw == (8, 4) and embedder.dim == 96 and embedder.max_batch == 2
    x = crops(5)
    out = embedder.embed(x)
    assert out.shape == (5, 96) and out.dtype == np.float32
    np.testing.assert_allclose(out, normalise_rows(x.reshape(5, -1)), atol=1e-6)
    np.testing.assert_allclose(out, Embedder(path, max_batch=32).embed(x), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_no_crops_give_an_empty_batch(tmp_path):
    embedder = Embedder(tiny_onnx.flatten_model(tmp_path / "flat.onnx"))
    out = embedder.embed(np.empty((0, 3, 8, 4), np.float32))
    assert out.shape == (0, 96) and out.dtype == np.float32


def test_a_fixed_batch_model_runs_in_padded_chunks_of_its_size(tmp_path):
    embedder = Embedder(tiny_onnx.flatten_model(tmp_path / "fixed.onnx", [2, 3, 8, 4]), max_batch=32)
    assert embedder.max_batch == 2
    x = crops(3)
    np.testing.assert_allclose(embedder.embed(x), normalise_rows(x.reshape(3, -1)), atol=1e-6)


def test_the_output_can_be_named_when_the_model_has_several(tmp_path):
    path = tiny_onnx.two_output_model(tmp_path / "two.onnx")
    assert Embedder(path, output="z").dim == 96


@pytest.mark.parametrize(
    "build,kwargs,error,message",
    [
        (lambda p: tiny_onnx.identity_model(p, ["N", 3, 8]), {}, ReidModelError, "must be rank 4"),
        (lambda p: tiny_onnx.flatten_model(p, ["N", 1, 8, 4]), {}, ReidModelError, r"must be \[N, 3, H, W\]"),
        (lambda p: tiny_onnx.flatten_model(p, ["N", 3, "h", 4]), {}, ReidModelError, "fixed H and W"),
        (
            lambda p: tiny_onnx.flatten_model(p, input_type=tiny_onnx.DOUBLE),
            {},
            ReidModelError,
            r"input 'x' must be float32, got tensor\(double\)",
        ),
        (
            lambda p: tiny_onnx.identity_model(p, ["N", 3, 8, 4]),
            {},
            ReidModelError,
            r"must be rank 2 \[N, D\]",
        ),
        (
            tiny_onnx.double_output_model,
            {},
            ReidModelError,
            r"output 'y' must be float32, got tensor\(double\)",
        ),
        (tiny_onnx.two_output_model, {}, ReidModelError, "2 outputs"),
        (tiny_onnx.two_output_model, {"output": "w"}, ReidModelError, "no output 'w'"),
        (tiny_onnx.flatten_model, {"max_batch": 0}, ValueError, "max_batch must be >= 1"),
    ],
)
def test_a_model_that_is_not_an_osnet_style_reid_model_is_refused_at_load(
    tmp_path, build, kwargs, error, message
):
    path = build(tmp_path / "model.onnx")
    with pytest.raises(error, match=message):
        Embedder(path, **kwargs)


def test_missing_model_and_wrong_crops(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        Embedder(tmp_path / "nothing.onnx")
    embedder = Embedder(tiny_onnx.flatten_model(tmp_path / "flat.onnx"))
    with pytest.raises(ValueError, match=r"crops must be \(N, 3, 8, 4\)"):
        embedder.embed(np.zeros((2, 3, 256, 128), np.float32))


def test_the_fixture_model_reads_its_input_size(osnet):
    assert osnet.input_hw == (256, 128) and osnet.dim == 512


def test_the_same_walker_in_two_nearby_frames_is_more_similar_than_two_different_walkers(osnet):
    a = osnet.embed(crop_batch(vtest_frame(FRAME_A), WALKERS_A, osnet.input_hw, bgr=True))
    b = osnet.embed(crop_batch(vtest_frame(FRAME_B), WALKERS_B, osnet.input_hw, bgr=True))
    sim = a @ b.T  # (4, 3): row i, column j; the same walker where i == j
    same = np.diag(sim)
    different = sim[~np.eye(4, 3, dtype=bool)]
    assert np.all(same >= 0.7), sim
    assert np.all(different <= 0.6), sim
    for i in range(3):  # each walker's best match in the other frame is itself
        assert np.argmax(sim[i]) == i and np.argmax(sim[:, i]) == i, sim
    within = a @ a.T  # the four walkers of one frame are all different people
    assert np.all(within[~np.eye(4, dtype=bool)] <= 0.6), within


def test_batching_the_real_model_changes_nothing(osnet):
    batch = crop_batch(vtest_frame(FRAME_A), WALKERS_A, osnet.input_hw, bgr=True)
    one_by_one = np.concatenate([osnet.embed(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(osnet.embed(batch), one_by_one, atol=1e-5)
