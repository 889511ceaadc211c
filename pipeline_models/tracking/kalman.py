"""Constant-velocity Kalman filter for boxes, vectorised over tracks.

State (8 values per track): ``x, y, a, h, vx, vy, va, vh`` -- box centre ``(x, y)``, aspect ratio
``a = w / h``, height ``h`` and their velocities. The measurement is ``x, y, a, h``. Noise is relative
to the height, as in the ByteTrack / DeepSORT filter (``1/20`` for positions, ``1/160`` for velocities).

Every function is pure: it takes ``(n, 8)`` means and ``(n, 8, 8)`` covariances and returns new
arrays. All maths is float64.

Structure used for speed: starting from :func:`initiate`, every covariance couples each coordinate
only with its own velocity (``i`` with ``i + 4``), so the projected covariance is diagonal and the
update reduces to per-coordinate scalar maths. The arithmetic is ordered so results match, bit for
bit, the dense formulation with a Cholesky solve (LAPACK multiplies by the reciprocal of each
Cholesky diagonal entry); ``tests/unit/models/tracking/test_kalman.py`` checks this against dense maths.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
_STD_ASPECT = 1e-2  # process / initial noise of the aspect ratio
_STD_ASPECT_VELOCITY = 1e-5
_STD_ASPECT_MEASUREMENT = 1e-1

# Views into a covariance flattened to 64 values: the diagonal and the four 4-entry diagonals of its
# (position, velocity) blocks.
_DIAG = slice(0, 64, 9)
_PP = slice(0, 28, 9)  # (i, i)
_PV = slice(4, 32, 9)  # (i, i + 4)
_VP = slice(32, 60, 9)  # (i + 4, i)
_VV = slice(36, 64, 9)  # (i + 4, i + 4)

F64 = npt.NDArray[np.float64]


def initiate(measurements: F64) -> tuple[F64, F64]:
    """Create track states from unassociated measurements.

    Args:
        measurements: ``(n, 4)`` boxes as ``x, y, a, h``.

    Returns:
        ``(n, 8)`` means (velocities zero) and ``(n, 8, 8)`` diagonal covariances.
    """
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    n = len(z)
    mean = np.zeros((n, 8))
    mean[:, :4] = z
    h = z[:, 3]
    std = np.empty((n, 8))
    std[:, 0] = std[:, 1] = std[:, 3] = 2 * STD_WEIGHT_POSITION * h
    std[:, 2] = _STD_ASPECT
    std[:, 4] = std[:, 5] = std[:, 7] = 10 * STD_WEIGHT_VELOCITY * h
    std[:, 6] = _STD_ASPECT_VELOCITY
    cov = np.zeros((n, 64))
    cov[:, _DIAG] = np.square(std)
    return mean, cov.reshape(n, 8, 8)


def multi_predict(mean: F64, covariance: F64) -> tuple[F64, F64]:
    """Predict every state one frame ahead (``x' = F x``, ``P' = F P F^T + Q``).

    Args:
        mean: ``(n, 8)`` state means.
        covariance: ``(n, 8, 8)`` state covariances.

    Returns:
        Predicted ``(n, 8)`` means and ``(n, 8, 8)`` covariances.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
    covariance = np.asarray(covariance, dtype=np.float64).reshape(-1, 8, 8)
    h = mean[:, 3]
    std_pos = STD_WEIGHT_POSITION * h
    std_vel = STD_WEIGHT_VELOCITY * h
    q = np.empty((len(mean), 8))
    q[:, 0] = q[:, 1] = q[:, 3] = np.square(std_pos)
    q[:, 2] = np.square(_STD_ASPECT)
    q[:, 4] = q[:, 5] = q[:, 7] = np.square(std_vel)
    q[:, 6] = np.square(_STD_ASPECT_VELOCITY)

    new_mean = mean.copy()
    new_mean[:, :4] += mean[:, 4:]
    left = covariance.copy()  # F P
    left[:, :4, :] += covariance[:, 4:, :]
    new_cov = left.copy()  # (F P) F^T
    new_cov[:, :, :4] += left[:, :, 4:]
    new_cov.reshape(-1, 64)[:, _DIAG] += q
    return new_mean, new_cov


def multi_predict_steps(mean: F64, covariance: F64, steps: int) -> tuple[F64, F64]:
    """:func:`multi_predict` applied ``steps`` times (frames skipped since the last prediction).

    ``steps`` 1 is exactly :func:`multi_predict`. The noise of each step follows the height of that step,
    as ``steps`` separate predictions would.

    Raises:
        ValueError: ``steps`` < 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(steps):
        mean, covariance = multi_predict(mean, covariance)
    return mean, covariance


def predict(mean: F64, covariance: F64) -> tuple[F64, F64]:
    """Single-state form of :func:`multi_predict`: ``(8,)``, ``(8, 8)`` in and out."""
    m, c = multi_predict(mean[None], covariance[None])
    return m[0], c[0]


def update(mean: F64, covariance: F64, measurements: F64) -> tuple[F64, F64]:
    """Correct states with their measurements.

    Args:
        mean: ``(n, 8)`` predicted means.
        covariance: ``(n, 8, 8)`` predicted covariances (per-coordinate block structure, as produced
            by :func:`initiate` and :func:`multi_predict`).
        measurements: ``(n, 4)`` boxes as ``x, y, a, h``.

    Returns:
        Corrected ``(n, 8)`` means and ``(n, 8, 8)`` covariances.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
    covariance = np.asarray(covariance, dtype=np.float64).reshape(-1, 8, 8)
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    n = len(mean)
    std = np.empty((n, 4))
    std[:, 0] = std[:, 1] = std[:, 3] = STD_WEIGHT_POSITION * mean[:, 3]
    std[:, 2] = _STD_ASPECT_MEASUREMENT
    flat = covariance.reshape(-1, 64)
    innovation_var = flat[:, _PP] + np.square(std)  # diagonal of S = H P H^T + R
    inv_chol = 1.0 / np.sqrt(innovation_var)
    # Kalman gain K (8 x 4): non-zero only at (i, i) and (i + 4, i).
    gain_pos = (flat[:, _PP] * inv_chol) * inv_chol
    gain_vel = (flat[:, _VP] * inv_chol) * inv_chol
    innovation = z - mean[:, :4]

    new_mean = mean.copy()
    new_mean[:, :4] += innovation * gain_pos
    new_mean[:, 4:] += innovation * gain_vel
    # P - K (S K^T), entry by entry within each (i, i + 4) block.
    s_gain_pos = innovation_var * gain_pos
    s_gain_vel = innovation_var * gain_vel
    new_cov = flat.copy()
    new_cov[:, _PP] -= gain_pos * s_gain_pos
    new_cov[:, _PV] -= gain_pos * s_gain_vel
    new_cov[:, _VP] -= gain_vel * s_gain_pos
    new_cov[:, _VV] -= gain_vel * s_gain_vel
    return new_mean, new_cov.reshape(-1, 8, 8)


#: DeepSORT's gate: the 0.95 quantile of the chi-square distribution with 4 degrees of freedom.
CHI2_95_4DOF = 9.4877


def gating_distance(mean: F64, covariance: F64, measurements: F64) -> F64:
    """Squared Mahalanobis distance of each measurement to each state's projected measurement.

    Args:
        mean: ``(n, 8)`` predicted means.
        covariance: ``(n, 8, 8)`` predicted covariances (the block structure of :func:`update`, so the
            innovation covariance is diagonal).
        measurements: ``(m, 4)`` boxes as ``x, y, a, h``.

    Returns:
        ``(n, m)`` float64; compare with :data:`CHI2_95_4DOF`.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
    flat = np.asarray(covariance, dtype=np.float64).reshape(-1, 64)
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    std = np.empty((len(mean), 4))
    std[:, 0] = std[:, 1] = std[:, 3] = STD_WEIGHT_POSITION * mean[:, 3]
    std[:, 2] = _STD_ASPECT_MEASUREMENT
    innovation_var = flat[:, _PP] + np.square(std)
    diff = z[None, :, :] - mean[:, None, :4]
    return np.sum(np.square(diff) / innovation_var[:, None, :], axis=2)


def xyah_to_tlwh(mean: F64) -> F64:
    """Boxes ``x, y, w, h`` (top-left, size) from ``(n, >=4)`` states ``x, y, a, h, ...``."""
    out = np.array(mean[:, :4], dtype=np.float64)
    out[:, 2] *= out[:, 3]
    out[:, :2] -= out[:, 2:] / 2
    return out


def tlwh_to_xyah(tlwh: F64) -> F64:
    """Measurements ``x, y, a, h`` (centre, aspect, height) from ``(n, 4)`` boxes ``x, y, w, h``."""
    out = np.array(tlwh, dtype=np.float64).reshape(-1, 4)
    out[:, :2] += out[:, 2:] / 2
    out[:, 2] /= out[:, 3]
    return out
