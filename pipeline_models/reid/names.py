"""Enrolled people's names on a camera frame's tracks, and the sightings identities records.

- :func:`assign_names`: each track's smoothed embedding against every enrolled embedding; a person's
  similarity is their best embedding's; one-to-one per frame (linear assignment), at least ``name_thresh``.
- :class:`EnrolledCache`: the enrolled embeddings read from the store at most every ``refresh_s`` seconds,
  so that enrolments made by another process (the people model, another server) show up soon.
- :func:`due_sightings`: which tracks are due a sighting (at most one per track per ``interval_s``).

Time is passed in: nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pipeline_models.tracking.matching import linear_assignment

Enrolled = tuple[list[str], npt.NDArray[np.float32]]


def assign_names(
    embeddings: npt.ArrayLike, names: list[str], enrolled: npt.ArrayLike, name_thresh: float
) -> list[str]:
    """The enrolled person's name for each track ("" for none), no name twice in one frame.

    Args:
        embeddings: ``(n, D)`` the tracks' embeddings (normalised here; a row with NaN or zeros: no look
            yet, no name).
        names: ``(k,)`` the person of each enrolled embedding (a person may have several rows).
        enrolled: ``(k, D)`` unit enrolled embeddings.
        name_thresh: least cosine similarity for a track to carry a name.

    Returns:
        ``n`` names aligned with the tracks; the assignment maximises the total similarity of the pairs.
    """
    q = np.asarray(embeddings, np.float64)
    n = len(q)
    out = [""] * n
    people = sorted(set(names))
    if n == 0 or not people:
        return out
    if q.ndim != 2:
        raise ValueError(f"embeddings must be (n, D), got shape {q.shape}")
    norms = np.linalg.norm(np.nan_to_num(q), axis=1)
    known = np.all(np.isfinite(q), axis=1) & (norms > 1e-12)
    if not known.any():
        return out
    sim = (q[known] / norms[known, None]) @ np.asarray(enrolled, np.float64).T  # (m, k)
    column = {p: c for c, p in enumerate(people)}
    person = np.full((len(sim), len(people)), -np.inf)
    for row, name in enumerate(names):  # a person's similarity: their best embedding's
        c = column[name]
        person[:, c] = np.maximum(person[:, c], sim[:, row])
    matches, _, _ = linear_assignment(1.0 - person, 1.0 - name_thresh)
    rows = np.flatnonzero(known)
    for r, c in matches.tolist():
        out[int(rows[r])] = people[c]
    return out


@dataclass
class EnrolledCache:
    """The store's enrolled embeddings, read again when ``refresh_s`` has passed since the last read.

    Attributes:
        read: returns ``(names, (k, D) embeddings)`` (``SqlStore.enrolled``).
        refresh_s: seconds a read stays current (0: read on every frame).
    """

    read: Callable[[], Enrolled]
    refresh_s: float
    _value: Enrolled | None = field(default=None, init=False)
    _read_at: float = field(default=-np.inf, init=False)

    def get(self, now: float) -> Enrolled:
        """The enrolled embeddings as of at most ``refresh_s`` ago (a failed read raises, nothing cached)."""
        if self._value is None or now - self._read_at >= self.refresh_s or now < self._read_at:
            self._value, self._read_at = self.read(), now
        return self._value


def due_sightings(
    track_ids: list[int], last: Mapping[int, float], now: float, interval_s: float
) -> list[int]:
    """Indices of the tracks due a sighting: never recorded, or last recorded ``interval_s`` or more ago."""
    return [i for i, tid in enumerate(track_ids) if tid not in last or now - last[tid] >= interval_s]
