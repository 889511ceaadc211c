"""Rows scaled to unit L2 norm: the embedder's outputs and every EMA step of a track's or an identity's look.

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
    norms = np.sqrt(np.einsum("ij,ij->i", a, a)) if a.ndim == 2 else np.linalg.norm(a, axis=-1)
    return (a / np.maximum(norms, np.float32(eps))[..., None]).astype(np.float32)
