"""The gallery's records and input checks, shared by every store backend (``reid.store``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline_models.cameras import CameraId
from pipeline_models.errors import InvalidInputError

MAX_NAME_CHARS = 256


class GalleryError(InvalidInputError):
    """Bad input to the gallery (empty name, wrong embedding size, NaN) or a database it cannot use
    (reason ``bad_request``)."""


@dataclass(frozen=True)
class Person:
    """An enrolled person: ``id`` (int64, never reused), ``name``, embeddings stored, enrolment time."""

    id: int
    name: str
    embeddings: int
    enrolled: float


@dataclass(frozen=True)
class PersonMatch:
    """A search result: the person and the best cosine similarity among their embeddings."""

    id: int
    name: str
    similarity: float


@dataclass(frozen=True)
class Sighting:
    """Where and when a person was seen: camera, time, global id, and (in results) the similarity."""

    camera: CameraId
    time: float
    global_id: int
    similarity: float = float("nan")


def unit_embeddings(embeddings: npt.ArrayLike, dim: int, what: str) -> npt.NDArray[np.float32]:
    """``(k, D)`` unit float32 rows of ``(D,)`` or ``(k, D)`` input; :class:`GalleryError` when bad."""
    v = np.asarray(embeddings, dtype=np.float64)
    v = v.reshape(1, -1) if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[0] == 0:
        raise GalleryError(f"{what} must be one or more embeddings of size {dim}, got shape {v.shape}")
    if v.shape[1] != dim:
        raise GalleryError(f"{what} has size {v.shape[1]}, this gallery holds {dim}")
    if not np.all(np.isfinite(v)):
        raise GalleryError(f"{what} contains NaN or infinite values")
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        raise GalleryError(f"{what} contains an all-zero embedding")
    return (v / norms[:, None]).astype(np.float32)


def clean_name(name: object) -> str:
    """A person's name stripped, or a :class:`GalleryError` (empty, too long, control characters)."""
    if not isinstance(name, str) or not name.strip():
        raise GalleryError("a person's name must be a non-empty string")
    clean = name.strip()
    if len(clean) > MAX_NAME_CHARS or any(ord(c) < 32 for c in clean):
        raise GalleryError(f"a person's name must be at most {MAX_NAME_CHARS} printable characters")
    return clean
