"""Kalman filter: values, shapes, purity and agreement with the dense textbook formulas."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_models.tracking import kalman

F = np.eye(8) + np.eye(8, k=4)
H = np.eye(4, 8)


def _dense_predict(mean, cov):
    h = mean[3]
    std = [h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]
    return F @ mean, F @ cov @ F.T + np.diag(np.square(std))


def _dense_update(mean, cov, z):
    h = mean[3]
    r = np.diag(np.square([h / 20, h / 20, 1e-1, h / 20]))
    s = H @ cov @ H.T + r
    k = cov @ H.T @ np.linalg.inv(s)
    return mean + k @ (z - H @ mean), cov - k @ s @ k.T


def _random_states(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = np.column_stack([rng.uniform(0, 1000, n), rng.uniform(0, 600, n), rng.uniform(0.3, 0.6, n),
                         rng.uniform(40, 300, n)])
    mean, cov = kalman.initiate(z)
    mean[:, 4:] = rng.normal(0, 2, (n, 4))
    return mean, cov, rng


def test_initiate_values() -> None:
    mean, cov = kalman.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    assert mean.shape == (1, 8) and cov.shape == (1, 8, 8)
    np.testing.assert_array_equal(mean[0], [10, 20, 0.5, 100, 0, 0, 0, 0])
    expected_std = [10, 10, 1e-2, 10, 100 / 16, 100 / 16, 1e-5, 100 / 16]
    np.testing.assert_allclose(np.diag(cov[0]), np.square(expected_std), rtol=1e-12)
    assert np.count_nonzero(cov[0] - np.diag(np.diag(cov[0]))) == 0


def test_empty_inputs() -> None:
    mean, cov = kalman.initiate(np.empty((0, 4)))
    assert mean.shape == (0, 8) and cov.shape == (0, 8, 8)
    pm, pc = kalman.multi_predict(mean, cov)
    assert pm.shape == (0, 8) and pc.shape == (0, 8, 8)
    um, uc = kalman.update(mean, cov, np.empty((0, 4)))
    assert um.shape == (0, 8) and uc.shape == (0, 8, 8)


def test_predict_and_update_match_dense_formulas() -> None:
    mean, cov, rng = _random_states(20)
    for _ in range(5):
        pm, pc = kalman.multi_predict(mean, cov)
        for i in range(len(mean)):
            dm, dc = _dense_predict(mean[i], cov[i])
            np.testing.assert_allclose(pm[i], dm, rtol=1e-12)
            np.testing.assert_allclose(pc[i], dc, rtol=1e-12, atol=1e-12)
        z = pm[:, :4] + rng.normal(0, 2, (len(mean), 4)) * [1, 1, 0.01, 1]
        mean, cov = kalman.update(pm, pc, z)
        for i in range(len(mean)):
            dm, dc = _dense_update(pm[i], pc[i], z[i])
            np.testing.assert_allclose(mean[i], dm, rtol=1e-10)
            np.testing.assert_allclose(cov[i], dc, rtol=1e-9, atol=1e-9)


def test_update_pulls_towards_measurement_and_shrinks_variance() -> None:
    mean, cov = kalman.initiate(np.array([[100.0, 100.0, 0.5, 100.0]]))
    pm, pc = kalman.multi_predict(mean, cov)
    um, uc = kalman.update(pm, pc, np.array([[110.0, 100.0, 0.5, 100.0]]))
    assert 100 < um[0, 0] < 110 and um[0, 4] > 0  # position and velocity move towards it
    assert np.all(np.diag(uc[0])[:4] < np.diag(pc[0])[:4])


def test_constant_velocity_prediction() -> None:
    mean = np.array([[0.0, 0.0, 0.5, 100.0, 2.0, -1.0, 0.0, 0.5]])
    _, cov = kalman.initiate(mean[:, :4])
    pm, _ = kalman.multi_predict(mean, cov)
    np.testing.assert_array_equal(pm[0], [2, -1, 0.5, 100.5, 2, -1, 0, 0.5])


def test_functions_do_not_mutate_inputs() -> None:
    mean, cov, _ = _random_states(4)
    z = mean[:, :4] + 1
    copies = mean.copy(), cov.copy(), z.copy()
    kalman.multi_predict(mean, cov)
    kalman.update(mean, cov, z)
    for before, after in zip(copies, (mean, cov, z)):
        np.testing.assert_array_equal(before, after)


def test_vectorised_equals_one_by_one() -> None:
    mean, cov, rng = _random_states(6, seed=3)
    z = mean[:, :4] + rng.normal(0, 1, (6, 4))
    pm, pc = kalman.multi_predict(mean, cov)
    um, uc = kalman.update(pm, pc, z)
    for i in range(6):
        m1, c1 = kalman.predict(mean[i], cov[i])
        np.testing.assert_array_equal(m1, pm[i])
        np.testing.assert_array_equal(c1, pc[i])
        m2, c2 = kalman.update(m1[None], c1[None], z[i : i + 1])
        np.testing.assert_array_equal(m2[0], um[i])
        np.testing.assert_array_equal(c2[0], uc[i])


@pytest.mark.parametrize("tlwh", [[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 1.0, 1.0], [5.5, 7.25, 100.0, 40.0]])
def test_box_conversions_round_trip(tlwh: list[float]) -> None:
    box = np.array([tlwh])
    xyah = kalman.tlwh_to_xyah(box)
    np.testing.assert_allclose(xyah[0], [tlwh[0] + tlwh[2] / 2, tlwh[1] + tlwh[3] / 2, tlwh[2] / tlwh[3], tlwh[3]])
    np.testing.assert_allclose(kalman.xyah_to_tlwh(xyah), box, rtol=1e-12)
