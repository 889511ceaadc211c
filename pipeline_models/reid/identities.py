"""Global identities across the cameras of a server: the same person gets the same global id everywhere.

Each camera frame's tracks (with their smoothed appearance embeddings) are matched one-to-one against a
gallery of recently seen identities by cosine similarity (:func:`match_gallery`, linear assignment).
Rules kept by :class:`GlobalIdentities`:

- a track that matches no identity gets a new id, allocated by the store (int64, never reused);
- no two tracks of one camera frame share an id, and a track never takes an id held by another live track
  of the same camera (one the camera's tracker still has, though it may be lost this frame);
- a track's id may be revised during its first ``revision_frames`` frames, then it stays;
- identities not seen for ``max_age_s`` seconds expire, and so do bindings of tracks not seen for as long;
- an identity's embedding follows its tracks (EMA) only with looks at least ``similarity_thresh`` alike.

State lives behind :class:`IdentityStore` (:class:`MemoryIdentityStore` here), so a database can hold it
for several servers. Time is passed in: nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pipeline_models.cameras import CameraId
from pipeline_models.reid.appearance import ema_update_rows, rows_or_nan
from pipeline_models.reid.unit_vectors import unit_rows
from pipeline_models.settings import IdentitySettings
from pipeline_models.tracking.matching import linear_assignment

#: The settings (``similarity_thresh``, ``max_age_s``, ``revision_frames``, ``ema_momentum``) and their
#: trade-offs are :class:`~pipeline_models.settings.IdentitySettings`, their one definition.
#: Similarity added to a track's current identity while its id may still change: higher keeps ids steadier
#: (no flicker between look-alikes), lower lets a wrong first guess be corrected sooner.
STAY_BONUS = 0.05


@dataclass(frozen=True)
class Identity:
    """A person the server has seen.

    Attributes:
        global_id: int64 id, unique in the store.
        embedding: ``(D,)`` float32 unit smoothed embedding, or None until a track brings one.
        last_seen: time (seconds, the caller's clock) of the last frame that showed it.
        cameras: every camera it was seen on.
    """

    global_id: int
    embedding: npt.NDArray[np.float32] | None
    last_seen: float
    cameras: frozenset[CameraId] = frozenset()


@dataclass(frozen=True)
class Binding:
    """A camera's track bound to a global id.

    Attributes:
        global_id: the id.
        frames: frames the track has been through the matcher (its id is fixed from ``revision_frames``).
        last_seen: time of its last frame.
    """

    global_id: int
    frames: int
    last_seen: float


class IdentityStore(Protocol):
    """What the matcher needs from the storage of identities and per-camera track bindings."""

    def allocate_id(self) -> int:
        """A new global id, never handed out before by this store."""
        ...

    def allocate_ids(self, count: int) -> list[int]:
        """``count`` new global ids, ascending (one write)."""
        ...

    def gallery(self) -> list[Identity]:
        """Every stored identity, in ascending ``global_id``."""
        ...

    def gallery_matrix(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``(g,)`` ids and ``(g, D)`` embeddings of every identity that has one, in any order (what a
        frame matches against; the caller must not change them)."""
        ...

    def get(self, global_id: int) -> Identity | None: ...

    def identities(self, global_ids: Iterable[int]) -> dict[int, Identity]:
        """The stored identities among ``global_ids``, by id (one read)."""
        ...

    def put(self, identity: Identity) -> None:
        """Insert or replace the identity with this ``global_id``."""
        ...

    def bindings(self, camera: CameraId) -> dict[int, Binding]:
        """Track id -> binding, for every live track of ``camera``."""
        ...

    def bind(self, camera: CameraId, track_id: int, binding: Binding) -> None: ...

    def record(self, camera: CameraId, bindings: Mapping[int, Binding], identities: Iterable[Identity]) -> None:
        """A frame's writes at once, all or none: each track of ``camera`` bound (track id -> binding) and
        each identity inserted or replaced."""
        ...

    def release(self, camera: CameraId, track_ids: Iterable[int] | None = None) -> None:
        """Forget bindings of the given tracks of ``camera`` (all of them when None)."""
        ...

    def expire(self, before: float) -> None:
        """Drop identities and bindings last seen before ``before``."""
        ...

    def live_bindings(self, camera: CameraId, before: float) -> dict[int, Binding]:
        """:meth:`expire` then :meth:`bindings` of ``camera``, at once (what a frame begins with)."""
        ...


class GalleryRows:
    """Identities' embeddings as the rows of one matrix, kept as identities come and go (a removed row is
    filled with the last), so that a frame reads the gallery without stacking it."""

    def __init__(self) -> None:
        self._ids = np.empty(0, np.int64)
        self._vectors: npt.NDArray[np.float32] | None = None
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._row)

    def set(self, global_id: int, embedding: npt.NDArray[np.float32]) -> None:
        """Adds or replaces the identity's row.

        Raises:
            ValueError: an embedding of another size than the rows'.
        """
        self.check(global_id, embedding)
        row = self._row.get(global_id)
        if row is None:
            count = len(self._row)
            if self._vectors is None:
                self._vectors = np.empty((16, len(embedding)), np.float32)
                self._ids = np.empty(16, np.int64)
            elif count == len(self._vectors):
                self._vectors = np.concatenate([self._vectors, np.empty_like(self._vectors)])
                self._ids = np.concatenate([self._ids, np.empty_like(self._ids)])
            row = self._row[global_id] = count
            self._ids[row] = global_id
        self._vectors[row] = embedding

    def check(self, global_id: int, embedding: npt.NDArray[np.float32]) -> None:
        """Raises ValueError for an embedding of another size than the rows'."""
        if self._vectors is not None and self._vectors.shape[1] != len(embedding):
            raise ValueError(f"identity {global_id}: embedding size {len(embedding)}, the gallery's is "
                             f"{self._vectors.shape[1]}")

    def remove(self, global_id: int) -> None:
        row = self._row.pop(global_id, None)
        if row is None or self._vectors is None:
            return
        last = len(self._row)
        if row != last:
            self._vectors[row], self._ids[row] = self._vectors[last], self._ids[last]
            self._row[int(self._ids[row])] = row

    def matrix(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        count = len(self._row)
        if self._vectors is None:
            return self._ids[:0], np.empty((0, 0), np.float32)
        return self._ids[:count], self._vectors[:count]


class _ByLastSeen:
    """Keys with the time each was last seen, kept in that order so that expiry reads only what it drops. A
    key seen before the newest time so far (another clock, one stepped back) waits apart, read only when
    the oldest of those is due."""

    def __init__(self) -> None:
        self._in_order: dict[object, float] = {}
        self._behind: dict[object, float] = {}
        self._newest = -np.inf
        self._oldest_behind = np.inf  # at most the oldest of _behind (lower after a discard: one scan more)

    def touch(self, key: object, seen: float) -> None:
        self.discard(key)
        if seen >= self._newest:
            self._in_order[key] = self._newest = seen
        else:
            self._behind[key] = seen
            self._oldest_behind = min(self._oldest_behind, seen)

    def discard(self, key: object) -> None:
        self._in_order.pop(key, None)
        self._behind.pop(key, None)

    def pop_before(self, before: float) -> list[object]:
        """The keys last seen before ``before``, forgotten here."""
        gone = []
        for key, seen in self._in_order.items():
            if seen >= before:
                break
            gone.append(key)
        for key in gone:
            del self._in_order[key]
        if self._behind and before > self._oldest_behind:
            late = [key for key, seen in self._behind.items() if seen < before]
            for key in late:
                del self._behind[key]
            self._oldest_behind = min(self._behind.values(), default=np.inf)
            gone += late
        return gone


class MemoryIdentityStore:
    """:class:`IdentityStore` in this process's memory (one server). Expiry costs what it drops, the
    gallery is kept as one matrix (:class:`GalleryRows`): neither walks every identity each frame."""

    def __init__(self, first_id: int = 1) -> None:
        self._next = int(first_id)
        self._identities: dict[int, Identity] = {}
        self._bindings: dict[CameraId, dict[int, Binding]] = {}
        self._rows = GalleryRows()
        self._identity_seen = _ByLastSeen()
        self._binding_seen = _ByLastSeen()

    def allocate_id(self) -> int:
        gid, self._next = self._next, self._next + 1
        return gid

    def allocate_ids(self, count: int) -> list[int]:
        return [self.allocate_id() for _ in range(count)]

    def gallery(self) -> list[Identity]:
        return [self._identities[g] for g in sorted(self._identities)]

    def gallery_matrix(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._rows.matrix()

    def get(self, global_id: int) -> Identity | None:
        return self._identities.get(int(global_id))

    def identities(self, global_ids: Iterable[int]) -> dict[int, Identity]:
        found = ((int(g), self._identities.get(int(g))) for g in global_ids)
        return {g: identity for g, identity in found if identity is not None}

    def put(self, identity: Identity) -> None:
        gid = int(identity.global_id)
        if identity.embedding is not None:
            self._rows.set(gid, np.asarray(identity.embedding, np.float32).reshape(-1))
        else:
            self._rows.remove(gid)
        self._identities[gid] = identity
        self._identity_seen.touch(gid, identity.last_seen)

    def record(self, camera: CameraId, bindings: Mapping[int, Binding], identities: Iterable[Identity]) -> None:
        identities = list(identities)
        for identity in identities:  # checked first: a bad one writes nothing
            if identity.embedding is not None:
                self._rows.check(identity.global_id, np.asarray(identity.embedding).reshape(-1))
        for track_id, binding in bindings.items():
            self.bind(camera, track_id, binding)
        for identity in identities:
            self.put(identity)

    def bindings(self, camera: CameraId) -> dict[int, Binding]:
        return dict(self._bindings.get(camera, {}))

    def bind(self, camera: CameraId, track_id: int, binding: Binding) -> None:
        self._bindings.setdefault(camera, {})[int(track_id)] = binding
        self._binding_seen.touch((camera, int(track_id)), binding.last_seen)

    def release(self, camera: CameraId, track_ids: Iterable[int] | None = None) -> None:
        tracks = self._bindings.get(camera, {})
        for tid in list(tracks) if track_ids is None else [int(t) for t in track_ids]:
            if tracks.pop(tid, None) is not None:
                self._binding_seen.discard((camera, tid))
        if not tracks:
            self._bindings.pop(camera, None)

    def expire(self, before: float) -> None:
        for gid in self._identity_seen.pop_before(before):
            del self._identities[gid]  # type: ignore[arg-type]
            self._rows.remove(gid)  # type: ignore[arg-type]
        for camera, tid in self._binding_seen.pop_before(before):  # type: ignore[misc]
            tracks = self._bindings[camera]
            del tracks[tid]
            if not tracks:
                del self._bindings[camera]

    def live_bindings(self, camera: CameraId, before: float) -> dict[int, Binding]:
        self.expire(before)
        return self.bindings(camera)


def match_gallery(
    queries: npt.ArrayLike,
    gallery: npt.ArrayLike,
    min_similarity: float,
    bonus: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """One-to-one matching of query embeddings to gallery embeddings by cosine similarity.

    Args:
        queries: ``(n, D)`` unit embeddings.
        gallery: ``(g, D)`` unit embeddings.
        min_similarity: a pair matches only when its score is ``>= min_similarity``.
        bonus: ``(n, g)`` added to the similarities to give the scores (None: 0).

    Returns:
        ``(n,)`` int64 gallery row matched to each query (-1: none) and the ``(n, g)`` float64 scores.
        The assignment maximises the total score of the matched pairs. Float32 queries and gallery (the
        identities step's) are multiplied in float32, the gallery never copied to float64; the scores are
        float64 either way.
    """
    q, g = np.asarray(queries), np.asarray(gallery)
    exact = np.float32 if q.dtype == np.float32 and g.dtype == np.float32 else np.float64
    q, g = q.astype(exact, copy=False), g.astype(exact, copy=False)
    n = q.shape[0] if q.ndim == 2 else 0
    rows = np.full(n, -1, np.int64)
    if n == 0 or g.ndim != 2 or len(g) == 0:
        return rows, np.zeros((n, len(g) if g.ndim == 2 else 0), np.float64)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"embedding sizes differ: queries {q.shape[1]}, gallery {g.shape[1]}")
    sim = (q @ g.T).astype(np.float64)
    if bonus is not None:
        sim = sim + np.asarray(bonus, np.float64)
    # Only pairs at or above the threshold can match: the assignment among the rows and columns that have
    # one is the whole one's, over a matrix of a few columns instead of the whole gallery.
    possible = 1.0 - sim <= 1.0 - min_similarity  # linear_assignment's own test of a pair
    cand_rows, cand_cols = np.flatnonzero(possible.any(axis=1)), np.flatnonzero(possible.any(axis=0))
    if len(cand_rows):
        matches, _, _ = linear_assignment(1.0 - sim[np.ix_(cand_rows, cand_cols)], 1.0 - min_similarity)
        rows[cand_rows[matches[:, 0]]] = cand_cols[matches[:, 1]]
    return rows, sim


def _check_frame_inputs(
    track_ids: npt.ArrayLike, embeddings: npt.ArrayLike
) -> tuple[list[int], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    ids = np.asarray(track_ids, dtype=np.int64).reshape(-1).tolist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"track ids of one frame must be unique, got {ids}")
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.size == 0 and not ids:
        return ids, np.empty((0, 0), np.float32), np.zeros(0, bool)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise ValueError(f"embeddings must be ({len(ids)}, D), got shape {emb.shape}")
    unit, known = unit_rows(emb)
    return ids, unit, known


@dataclass
class GlobalIdentities:
    """Assigns global ids to the tracks of one camera frame at a time (see the module docstring)."""

    store: IdentityStore
    settings: IdentitySettings = field(default_factory=IdentitySettings)
    stay_bonus: float = STAY_BONUS

    def __post_init__(self) -> None:
        if not self.stay_bonus >= 0:
            raise ValueError(f"stay_bonus must be >= 0, got {self.stay_bonus}")

    def assign(
        self, camera: CameraId, now: float, track_ids: npt.ArrayLike, embeddings: npt.ArrayLike
    ) -> npt.NDArray[np.int64]:
        """Global ids of one camera frame's tracks, and the store updated with this frame.

        Args:
            camera: the camera.
            now: the frame's time in seconds (any clock, non-decreasing per server).
            track_ids: ``(n,)`` the camera tracker's ids of the tracks in this frame (unique).
            embeddings: ``(n, D)`` their appearance embeddings (normalised here); a row of NaN or zeros is
                a track without one yet: it keeps its id, or gets a new one, without appearance matching.

        Returns:
            ``(n,)`` int64 global ids aligned with ``track_ids``, distinct within the frame.

        Raises:
            ValueError: duplicate track ids, or embeddings not ``(n, D)``.
        """
        cfg = self.settings
        ids, unit, known = _check_frame_inputs(track_ids, embeddings)
        bindings = self.store.live_bindings(camera, now - cfg.max_age_s)
        result = np.zeros(len(ids), np.int64)
        locked = np.zeros(len(ids), bool)
        for i, tid in enumerate(ids):
            b = bindings.get(tid)
            if b is not None and b.frames >= cfg.revision_frames:
                result[i], locked[i] = b.global_id, True
        assigned = locked.copy()
        in_frame = set(ids)
        reserved = {b.global_id for t, b in bindings.items() if t not in in_frame} | set(
            result[locked].tolist()
        )
        open_rows = np.flatnonzero(~locked & known)
        # The gallery is read only when a track is still open to matching (most frames have none).
        gids, matrix = self.store.gallery_matrix() if len(open_rows) else (np.empty(0, np.int64), None)
        if len(gids):
            bonus = np.zeros((len(open_rows), len(gids)), np.float64)
            bonus[:, np.isin(gids, list(reserved))] = -np.inf  # never matched
            for k, i in enumerate(open_rows.tolist()):
                b = bindings.get(ids[i])
                if b is not None and b.global_id not in reserved:
                    bonus[k, gids == b.global_id] += self.stay_bonus
            rows, _ = match_gallery(unit[open_rows], matrix, cfg.similarity_thresh, bonus)
            for i, r in zip(open_rows.tolist(), rows.tolist(), strict=True):
                if r >= 0:
                    result[i], assigned[i] = gids[r], True
        taken = reserved | set(result[assigned].tolist())
        new_rows = []
        for i, tid in enumerate(ids):
            if assigned[i]:
                continue
            b = bindings.get(tid)
            if b is not None and b.global_id not in taken:
                result[i] = b.global_id  # nothing better: keep the id it has
                taken.add(b.global_id)
            else:
                new_rows.append(i)
        if new_rows:  # ids never handed out: distinct from every taken one
            result[new_rows] = self.store.allocate_ids(len(new_rows))
        self._record(camera, now, ids, result, unit, known, bindings)
        return result

    def _record(
        self,
        camera: CameraId,
        now: float,
        ids: list[int],
        global_ids: npt.NDArray[np.int64],
        unit: npt.NDArray[np.float32],
        known: npt.NDArray[np.bool_],
        bindings: Mapping[int, Binding],
    ) -> None:
        """Binds each track to its global id and folds its look into the identity's, all tracks' at once
        (their global ids are distinct): one read and one write of the store."""
        gids = global_ids.tolist()
        stored = self.store.identities(gids)
        idents = [stored.get(gid) or Identity(gid, None, now) for gid in gids]
        new_bindings = {}
        for tid, gid in zip(ids, gids, strict=True):
            old = bindings.get(tid)
            new_bindings[tid] = Binding(gid, (old.frames if old else 0) + 1, now)
        smoothed = [ident.embedding for ident in idents]
        folded = np.flatnonzero(known)
        if len(folded):
            past = rows_or_nan([smoothed[i] for i in folded.tolist()], unit.shape[1])
            # A look unlike the identity's (a kept or a fixed id) is not folded in: no drift to another person.
            # (A NaN row, an identity without a look yet, compares False and is taken by the first test.)
            alike = ~np.isfinite(past).all(axis=1) | (
                np.einsum("ij,ij->i", past, unit[folded]) >= self.settings.similarity_thresh
            )
            folded = folded[alike]
            updated = ema_update_rows(past[alike], unit[folded], self.settings.ema_momentum)
            for i, row in zip(folded.tolist(), updated):
                smoothed[i] = row
        recorded = []
        for ident, embedding in zip(idents, smoothed, strict=True):
            cameras = ident.cameras if camera in ident.cameras else ident.cameras | {camera}
            recorded.append(Identity(ident.global_id, embedding, max(now, ident.last_seen), cameras))
        self.store.record(camera, new_bindings, recorded)

    def release(self, camera: CameraId, track_ids: Iterable[int] | None = None) -> None:
        """Forget the bindings of tracks the camera's tracker removed (all when None: the sequence ended)."""
        self.store.release(camera, track_ids)
