"""Durable gallery in SQLite (stdlib ``sqlite3``): enrolled people with their embeddings, and sightings.

One database holds embeddings of one size ``D`` (fixed when it is created, checked when it is reopened).
Every write is one transaction: it is checked in full before anything is written, and a failure part-way
rolls back, so a failed call loses and leaves nothing. The schema carries a version (``PRAGMA user_version``);
a database of another version is refused rather than misread. Search is cosine similarity over the stored
unit embeddings (numpy, in memory: fine for thousands of people; a vector index can come later).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from pipeline_models.cameras import CameraId
from pipeline_models.errors import InvalidInputError

T = TypeVar("T")
SCHEMA_VERSION = 1
MAX_NAME_CHARS = 256
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    enrolled REAL NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE TABLE sightings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    time REAL NOT NULL,
    global_id INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX sightings_time ON sightings(time);
"""


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


class GalleryStore:
    """The gallery in one SQLite file; safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: str | Path, dim: int) -> None:
        """Open (or create) the gallery.

        Args:
            path: the SQLite file (created with its tables when missing).
            dim: embedding size ``D`` of this gallery.

        Raises:
            GalleryError: ``dim`` < 1, or the file holds another schema version or another ``D``.
        """
        if dim < 1:
            raise GalleryError(f"embedding size must be >= 1, got {dim}")
        self.path = Path(path)
        self.dim = int(dim)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._open_schema()
        except BaseException:
            self._conn.close()
            raise

    def _open_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute("INSERT INTO meta VALUES ('dim', ?)", (str(self.dim),))
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return
        if version != SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path}: gallery schema version {version}, this code reads {SCHEMA_VERSION}"
            )
        stored = int(self._conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()[0])
        if stored != self.dim:
            raise GalleryError(f"{self.path}: gallery holds {stored}-d embeddings, not {self.dim}-d")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> GalleryStore:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _vectors(self, embeddings: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
        return unit_embeddings(embeddings, self.dim, what)

    @staticmethod
    def _name(name: object) -> str:
        return clean_name(name)

    # -- writes (one transaction each) ---------------------------------------------------------------

    def _write(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one transaction: committed when it returns, rolled back when it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
                self._conn.execute("COMMIT")
                return result
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _insert_embeddings(self, person_id: int, vectors: npt.NDArray[np.float32]) -> None:
        self._conn.executemany(
            "INSERT INTO embeddings (person_id, vector) VALUES (?, ?)",
            [(person_id, row.tobytes()) for row in vectors],
        )

    def enrol(self, name: str, embeddings: npt.ArrayLike, now: float) -> int:
        """Enrol a person with one or more embeddings (``(D,)`` or ``(k, D)``); returns their id.

        Raises:
            GalleryError: empty or bad name, a name already enrolled, embeddings of the wrong size, NaN,
                infinite or all zero.
        """
        clean, vectors = self._name(name), self._vectors(embeddings, f"enrolment of {name!r}")

        def insert() -> int:
            try:
                cur = self._conn.execute("INSERT INTO people (name, enrolled) VALUES (?, ?)", (clean, now))
            except sqlite3.IntegrityError:
                raise GalleryError(f"{clean!r} is already enrolled") from None
            person_id = int(cur.lastrowid)
            self._insert_embeddings(person_id, vectors)
            return person_id

        return self._write(insert)

    def add_embeddings(self, person_id: int, embeddings: npt.ArrayLike) -> None:
        """More embeddings for an enrolled person (another photo).

        Raises:
            GalleryError: bad embeddings, or no such person.
        """
        vectors = self._vectors(embeddings, f"embeddings of person {person_id}")

        def insert() -> None:
            if self._conn.execute("SELECT 1 FROM people WHERE id = ?", (person_id,)).fetchone() is None:
                raise GalleryError(f"no enrolled person {person_id}")
            self._insert_embeddings(person_id, vectors)

        self._write(insert)

    def delete(self, person_id: int) -> bool:
        """Delete a person and their embeddings; False when there was none."""
        return self._write(
            lambda: self._conn.execute("DELETE FROM people WHERE id = ?", (person_id,)).rowcount > 0
        )

    def add_sighting(self, camera: CameraId, time: float, global_id: int, embedding: npt.ArrayLike) -> None:
        """Record that ``global_id`` was seen on ``camera`` at ``time`` looking like ``embedding`` ``(D,)``.

        Raises:
            GalleryError: a bad embedding or a non-finite time.
        """
        vector = self._vectors(embedding, "sighting")
        if vector.shape[0] != 1 or not math.isfinite(time):
            raise GalleryError("a sighting is one embedding at a finite time")
        row = (json.dumps(camera), float(time), int(global_id), vector[0].tobytes())
        self._write(
            lambda: self._conn.execute(
                "INSERT INTO sightings (camera, time, global_id, vector) VALUES (?, ?, ?, ?)", row
            )
        )

    def prune_sightings(self, before: float) -> int:
        """Delete sightings older than ``before``; returns how many."""
        return self._write(
            lambda: self._conn.execute("DELETE FROM sightings WHERE time < ?", (before,)).rowcount
        )

    # -- reads -----------------------------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Every enrolled person, by id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT p.id, p.name, COUNT(e.id), p.enrolled FROM people p "
                "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.id"
            ).fetchall()
        return [Person(int(i), n, int(k), float(t)) for i, n, k, t in rows]

    def _matrix(self, blobs: list[bytes]) -> npt.NDArray[np.float32]:
        if not blobs:
            return np.empty((0, self.dim), np.float32)
        return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), self.dim)

    def search_people(self, embedding: npt.ArrayLike, top_k: int = 5) -> list[PersonMatch]:
        """The ``top_k`` enrolled people most like ``embedding`` ``(D,)``, best first (ties by id)."""
        query = self._vectors(embedding, "query")[0]
        with self._lock:
            rows = self._conn.execute(
                "SELECT p.id, p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
                "ORDER BY p.id, e.id"
            ).fetchall()
        best: dict[int, PersonMatch] = {}
        sims = self._matrix([r[2] for r in rows]) @ query
        for (pid, name, _), sim in zip(rows, sims.tolist(), strict=True):
            if pid not in best or sim > best[pid].similarity:
                best[pid] = PersonMatch(int(pid), name, float(sim))
        return sorted(best.values(), key=lambda m: (-m.similarity, m.id))[: max(top_k, 0)]

    def search_sightings(
        self, embedding: npt.ArrayLike, top_k: int = 20, since: float = -math.inf
    ) -> list[Sighting]:
        """The ``top_k`` sightings (at or after ``since``) most like ``embedding`` ``(D,)``, best first."""
        query = self._vectors(embedding, "query")[0]
        with self._lock:
            rows = self._conn.execute(
                "SELECT camera, time, global_id, vector FROM sightings WHERE time >= ? ORDER BY id", (since,)
            ).fetchall()
        sims = self._matrix([r[3] for r in rows]) @ query
        order = np.argsort(-sims, kind="stable")[: max(top_k, 0)]
        return [
            Sighting(json.loads(rows[i][0]), float(rows[i][1]), int(rows[i][2]), float(sims[i]))
            for i in order
        ]
