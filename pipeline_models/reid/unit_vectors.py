"""Rows scaled to unit L2 norm: the embedder's outputs, every EMA step of a track's or an identity's look, and
the embeddings compared by cosine.

Pure numpy with no other import, so the embedder (ONNX Runtime) and the appearance maths (which the
tracker imports) share it without importing each other.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def normalise_rows(rows: npt.ArrayLike, eps: float = 1e-12) -> npt.NDArray[np.float32]:
    """Each row of ``(n, D)`` ``rows`` divided by its norm (at least ``eps``), as a new float32 array: a zero
    row stays zero."""
    a = np.asarray(rows, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", a, a))
    return a / np.maximum(norms, np.float32(eps))[:, None]  # float32 over float32: float32


def unit_rows(rows: npt.ArrayLike) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """``(n, D)`` rows scaled to unit norm, zero where a row has no finite norm above 1e-12, and which rows
    had one (an embedding that is missing, NaN, or zero gives no direction).

    Raises:
        ValueError: not ``(n, D)``.
    """
    a = np.asarray(rows, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"embeddings must be (n, D), got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1)
    known = np.isfinite(norms) & (norms > 1e-12)
    if known.all():  # the usual frame: every row at once, no masking
        return a / norms[:, None], known
    out = np.zeros_like(a)
    out[known] = a[known] / norms[known, None]
    return out, known
