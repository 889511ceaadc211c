"""The ReID store behind ``open_store(database_url)``: enrolled people, sightings and global identities.

One SQL implementation (:class:`SqlStore`) over two databases:

- ``""``: SQLite in this process's memory (one server, gone at exit);
- ``sqlite:///path`` or a bare path: a SQLite file (stdlib ``sqlite3``, WAL; embedded, nothing to set up);
- ``postgresql://user@host:port/db``: PostgreSQL through psycopg 3 (the ``postgres`` extra), for several
  servers sharing one database: global ids come from a sequence, so two servers never hand out the same
  one, and each sees the identities the other stored.

It holds embeddings of one size ``D`` (fixed when the database is created, checked when it is reopened), as
float32 bytes. The schema carries a version and is created on first open. Every call is one transaction:
it is checked in full before anything is written, and a failure part-way rolls back, so a failed call
loses and leaves nothing. A lost connection raises :class:`StoreUnavailableError` (reason ``internal``)
and the next call connects again. It also implements :class:`~pipeline_models.reid.identities.IdentityStore`
(identities, per-camera track bindings), so :class:`GlobalIdentities` can keep its state here.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from pipeline_models.cameras import CameraId
from pipeline_models.reid.gallery import (
    GalleryError,
    Person,
    PersonMatch,
    Sighting,
    clean_name,
    unit_embeddings,
)
from pipeline_models.reid.identities import Binding, Identity

T = TypeVar("T")
SCHEMA_VERSION = 1
#: Serialises the first open of a PostgreSQL database by several servers (pg_advisory_xact_lock key).
_SCHEMA_LOCK = 0x52454944  # "REID"


class StoreUnavailableError(RuntimeError):
    """The database cannot be reached (or failed): reason ``internal``; the next call reconnects."""


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL: the schema's types and the id sequence."""

    name: str
    id_column: str  # an auto-assigned int64 primary key
    real: str
    blob: str

    def schema(self) -> list[str]:
        """The tables, in creation order (the id sequence is created by :meth:`SqlStore._create`)."""
        key, real, blob = self.id_column, self.real, self.blob
        person = "person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE"
        return [
            "CREATE TABLE reid_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE people (id {key}, name TEXT NOT NULL UNIQUE, enrolled {real} NOT NULL)",
            f"CREATE TABLE embeddings (id {key}, {person}, vector {blob} NOT NULL)",
            "CREATE INDEX embeddings_person ON embeddings(person_id)",
            (
                f"CREATE TABLE sightings (id {key}, camera TEXT NOT NULL, time {real} NOT NULL,"
                f" global_id BIGINT NOT NULL, vector {blob} NOT NULL)"
            ),
            "CREATE INDEX sightings_time ON sightings(time)",
            (
                f"CREATE TABLE identities (global_id BIGINT PRIMARY KEY, embedding {blob},"
                f" last_seen {real} NOT NULL, cameras TEXT NOT NULL)"
            ),
            "CREATE INDEX identities_seen ON identities(last_seen)",
            (
                f"CREATE TABLE bindings (camera TEXT NOT NULL, track_id BIGINT NOT NULL,"
                f" global_id BIGINT NOT NULL,"
                f" frames BIGINT NOT NULL, last_seen {real} NOT NULL, PRIMARY KEY (camera, track_id))"
            ),
        ]


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "BLOB")
POSTGRES = Dialect(
    "postgresql", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION", "BYTEA"
)


class Connection(Protocol):
    """The part of a DB-API connection the store uses (sqlite3 and psycopg alike)."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """Connects and runs one transaction; maps its driver's connection failures to StoreUnavailableError."""

    dialect: Dialect
    where: str

    def connect(self) -> Connection: ...

    def transaction(self, conn: Connection, fn: Callable[[Connection], T]) -> T: ...

    def table_exists(self, conn: Connection, table: str) -> bool: ...

    def next_id(self, conn: Connection) -> int: ...


class SqliteBackend:
    """SQLite through stdlib ``sqlite3``: a file (WAL, foreign keys on) or ``:memory:``."""

    dialect = SQLITE

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = "in-memory SQLite" if path == ":memory:" else f"SQLite {path}"

    def connect(self) -> Connection:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: a commit survives the process dying (not a power cut) without an fsync
                # each; identities commits several times a frame.
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self.where}: cannot open: {exc}") from exc
        return conn

    def transaction(self, conn: Connection, fn: Callable[[Connection], T]) -> T:
        try:
            conn.execute("BEGIN IMMEDIATE")  # takes the write lock now: two writers never interleave
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self.where}: {exc}") from exc
        try:
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction is gone with the failure; nothing was committed
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreUnavailableError(f"{self.where}: {exc}") from exc
            raise

    def table_exists(self, conn: Connection, table: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return conn.execute(sql, (table,)).fetchone() is not None

    def next_id(self, conn: Connection) -> int:
        row = conn.execute("UPDATE id_sequence SET value = value + 1 RETURNING value").fetchone()
        return int(row[0])


class PostgresBackend:
    """PostgreSQL through psycopg 3 (autocommit; each call one explicit transaction)."""

    dialect = POSTGRES

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        try:
            import psycopg  # optional: only PostgreSQL deployments need it
        except ImportError as exc:
            raise GalleryError(
                "a postgresql:// database needs psycopg: pip install 'pipeline-models[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.url = url
        self.timeout = connect_timeout_s
        self.where = f"PostgreSQL {redacted_url(url)}"

    def connect(self) -> Connection:
        pg = self._psycopg
        try:
            return pg.connect(self.url, autocommit=True, connect_timeout=max(1, round(self.timeout)))
        except pg.Error as exc:
            raise StoreUnavailableError(f"{self.where}: cannot connect: {_first_line(exc)}") from exc

    def transaction(self, conn: Connection, fn: Callable[[Connection], T]) -> T:
        pg = self._psycopg
        try:
            with conn.transaction():  # type: ignore[attr-defined]
                return fn(conn)
        except (pg.OperationalError, pg.InterfaceError) as exc:
            raise StoreUnavailableError(f"{self.where}: {_first_line(exc)}") from exc

    def table_exists(self, conn: Connection, table: str) -> bool:
        return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None

    def next_id(self, conn: Connection) -> int:
        return int(conn.execute("SELECT nextval('global_ids')").fetchone()[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redacted_url(url: str) -> str:
    """The URL without a password (``postgresql://user:secret@host`` -> ``postgresql://user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


class SqlStore:
    """People, sightings and global identities in one SQL database (see the module docstring).

    Thread-safe: one connection behind a lock. A failed call raises; the store stays usable.
    """

    def __init__(self, backend: Backend, dim: int) -> None:
        """Open the database, creating the schema when it has none.

        Raises:
            GalleryError: ``dim`` < 1, or the database holds another schema version or another ``D``.
            StoreUnavailableError: the database cannot be reached.
        """
        if dim < 1:
            raise GalleryError(f"embedding size must be >= 1, got {dim}")
        self.backend = backend
        self.dim = int(dim)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._sql = _placeholders(backend.dialect)
        self._opened = False
        self._run(self._open_schema)
        self._opened = True

    # -- connection and transactions ------------------------------------------------------------------

    def _run(self, fn: Callable[[Connection], T]) -> T:
        """``fn(conn)`` in one transaction; a lost connection is dropped (reconnect next call) and raised."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self.backend.connect()
                    if self._opened:  # a new connection: the database may be a new one too
                        self.backend.transaction(self._conn, self._open_schema)
                return self.backend.transaction(self._conn, fn)
            except StoreUnavailableError:
                self._drop()
                raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                conn.close()

    def _exec(self, conn: Connection, sql: str, params: tuple = ()) -> Any:
        return conn.execute(self._sql(sql), params)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> SqlStore:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------------------

    def _open_schema(self, conn: Connection) -> None:
        if self.backend.dialect is POSTGRES:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        if not self.backend.table_exists(conn, "reid_meta"):
            self._create(conn)
            return
        meta = dict(self._exec(conn, "SELECT key, value FROM reid_meta").fetchall())
        version = int(meta.get("schema_version", 0))
        if version != SCHEMA_VERSION:
            raise GalleryError(
                f"{self.backend.where}: store schema version {version}, this code reads {SCHEMA_VERSION}"
            )
        if int(meta["dim"]) != self.dim:
            raise GalleryError(
                f"{self.backend.where}: store holds {meta['dim']}-d embeddings, not {self.dim}-d"
            )

    def _create(self, conn: Connection) -> None:
        for statement in self.backend.dialect.schema():
            conn.execute(statement)
        if self.backend.dialect is POSTGRES:
            conn.execute("CREATE SEQUENCE global_ids AS BIGINT START 1")
        else:
            conn.execute("CREATE TABLE id_sequence (value INTEGER NOT NULL)")
            conn.execute("INSERT INTO id_sequence VALUES (0)")
        rows = [("schema_version", str(SCHEMA_VERSION)), ("dim", str(self.dim))]
        for row in rows:
            self._exec(conn, "INSERT INTO reid_meta (key, value) VALUES (?, ?)", row)

    # -- enrolled people ---------------------------------------------------------------------------------

    def _vectors(self, embeddings: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
        return unit_embeddings(embeddings, self.dim, what)

    def _insert_embeddings(self, conn: Connection, person_id: int, vectors: npt.NDArray[np.float32]) -> None:
        for row in vectors:
            self._exec(
                conn, "INSERT INTO embeddings (person_id, vector) VALUES (?, ?)", (person_id, row.tobytes())
            )

    def enrol(self, name: str, embeddings: npt.ArrayLike, now: float) -> int:
        """Enrol a person with one or more embeddings (``(D,)`` or ``(k, D)``); returns their id.

        Raises:
            GalleryError: empty or bad name, a name already enrolled, embeddings of the wrong size, NaN,
                infinite or all zero.
        """
        clean, vectors = clean_name(name), self._vectors(embeddings, f"enrolment of {name!r}")
        if not math.isfinite(now):
            raise GalleryError("an enrolment time must be finite")

        def insert(conn: Connection) -> int:
            row = self._exec(
                conn,
                "INSERT INTO people (name, enrolled) VALUES (?, ?) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                (clean, float(now)),
            ).fetchone()
            if row is None:
                raise GalleryError(f"{clean!r} is already enrolled")
            self._insert_embeddings(conn, int(row[0]), vectors)
            return int(row[0])

        return self._run(insert)

    def add_embeddings(self, person_id: int, embeddings: npt.ArrayLike) -> None:
        """More embeddings for an enrolled person (another photo).

        Raises:
            GalleryError: bad embeddings, or no such person.
        """
        vectors = self._vectors(embeddings, f"embeddings of person {person_id}")

        def insert(conn: Connection) -> None:
            if self._exec(conn, "SELECT 1 FROM people WHERE id = ?", (int(person_id),)).fetchone() is None:
                raise GalleryError(f"no enrolled person {person_id}")
            self._insert_embeddings(conn, int(person_id), vectors)

        self._run(insert)

    def delete(self, person_id: int) -> bool:
        """Delete a person and their embeddings; False when there was none."""
        sql = "DELETE FROM people WHERE id = ?"
        return self._run(lambda conn: self._exec(conn, sql, (int(person_id),)).rowcount > 0)

    def people(self) -> list[Person]:
        """Every enrolled person, by id."""
        sql = (
            "SELECT p.id, p.name, COUNT(e.id), p.enrolled FROM people p "
            "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id, p.name, p.enrolled ORDER BY p.id"
        )
        rows = self._run(lambda conn: self._exec(conn, sql).fetchall())
        return [Person(int(i), n, int(k), float(t)) for i, n, k, t in rows]

    def _matrix(self, blobs: list[bytes]) -> npt.NDArray[np.float32]:
        if not blobs:
            return np.empty((0, self.dim), np.float32)
        return np.frombuffer(b"".join(bytes(b) for b in blobs), np.float32).reshape(len(blobs), self.dim)

    def search_people(self, embedding: npt.ArrayLike, top_k: int = 5) -> list[PersonMatch]:
        """The ``top_k`` enrolled people most like ``embedding`` ``(D,)`` best first (ties by id)."""
        query = self._vectors(embedding, "query")[0]
        sql = (
            "SELECT p.id, p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
            "ORDER BY p.id, e.id"
        )
        rows = self._run(lambda conn: self._exec(conn, sql).fetchall())
        best: dict[int, PersonMatch] = {}
        sims = self._matrix([r[2] for r in rows]) @ query
        for (pid, name, _), sim in zip(rows, sims.tolist(), strict=True):
            if pid not in best or sim > best[pid].similarity:
                best[pid] = PersonMatch(int(pid), name, float(sim))
        return sorted(best.values(), key=lambda m: (-m.similarity, m.id))[: max(top_k, 0)]

    def enrolled(self) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Every enrolled embedding with its person's name: ``(names, (k, D) unit float32)``, one name per
        row (a person with several embeddings has several rows)."""
        sql = "SELECT p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id ORDER BY p.id, e.id"
        rows = self._run(lambda conn: self._exec(conn, sql).fetchall())
        return [r[0] for r in rows], self._matrix([r[1] for r in rows]).copy()

    # -- sightings ---------------------------------------------------------------------------------------

    def add_sighting(self, camera: CameraId, time: float, global_id: int, embedding: npt.ArrayLike) -> None:
        """Record that ``global_id`` was seen on ``camera`` at ``time`` looking like ``embedding`` ``(D,)``.

        Raises:
            GalleryError: a bad embedding or a non-finite time.
        """
        vector = self._vectors(embedding, "sighting")
        if vector.shape[0] != 1 or not math.isfinite(time):
            raise GalleryError("a sighting is one embedding at a finite time")
        row = (json.dumps(camera), float(time), int(global_id), vector[0].tobytes())
        sql = "INSERT INTO sightings (camera, time, global_id, vector) VALUES (?, ?, ?, ?)"
        self._run(lambda conn: self._exec(conn, sql, row))

    def prune_sightings(self, before: float) -> int:
        """Delete sightings older than ``before``; returns how many."""
        sql = "DELETE FROM sightings WHERE time < ?"
        return self._run(lambda conn: self._exec(conn, sql, (float(before),)).rowcount)

    def search_sightings(
        self, embedding: npt.ArrayLike, top_k: int = 20, since: float = -math.inf
    ) -> list[Sighting]:
        """The ``top_k`` sightings (at or after ``since``) most like ``embedding`` ``(D,)``, best first."""
        query = self._vectors(embedding, "query")[0]
        sql = "SELECT camera, time, global_id, vector FROM sightings WHERE time >= ? ORDER BY id"
        rows = self._run(lambda conn: self._exec(conn, sql, (float(since),)).fetchall())
        sims = self._matrix([r[3] for r in rows]) @ query
        order = np.argsort(-sims, kind="stable")[: max(top_k, 0)]
        return [
            Sighting(json.loads(rows[i][0]), float(rows[i][1]), int(rows[i][2]), float(sims[i]))
            for i in order
        ]

    # -- global identities (the IdentityStore protocol) ------------------------------------------------

    def allocate_id(self) -> int:
        """A new global id, unique among every server sharing this database (a sequence)."""
        return self._run(self.backend.next_id)

    def allocate_ids(self, count: int) -> list[int]:
        """``count`` new global ids, ascending, in one transaction (:meth:`allocate_id`'s)."""
        return self._run(lambda conn: [self.backend.next_id(conn) for _ in range(count)])

    def _identity(self, row: tuple) -> Identity:
        gid, blob, seen, cameras = row
        emb = None if blob is None else self._matrix([blob])[0].copy()
        return Identity(int(gid), emb, float(seen), frozenset(json.loads(cameras)))

    def gallery(self) -> list[Identity]:
        """Every stored identity, in ascending ``global_id``."""
        sql = "SELECT global_id, embedding, last_seen, cameras FROM identities ORDER BY global_id"
        return [self._identity(r) for r in self._run(lambda conn: self._exec(conn, sql).fetchall())]

    def gallery_matrix(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ids and embeddings of the stored identities that have one, in ascending ``global_id``."""
        sql = "SELECT global_id, embedding FROM identities WHERE embedding IS NOT NULL ORDER BY global_id"
        rows = self._run(lambda conn: self._exec(conn, sql).fetchall())
        return np.array([int(g) for g, _ in rows], np.int64), self._matrix([blob for _, blob in rows])

    def get(self, global_id: int) -> Identity | None:
        sql = "SELECT global_id, embedding, last_seen, cameras FROM identities WHERE global_id = ?"
        row = self._run(lambda conn: self._exec(conn, sql, (int(global_id),)).fetchone())
        return None if row is None else self._identity(row)

    def identities(self, global_ids: Iterable[int]) -> dict[int, Identity]:
        """The stored identities among ``global_ids``, by id (one query)."""
        ids = tuple(sorted({int(g) for g in global_ids}))
        if not ids:
            return {}
        sql = ("SELECT global_id, embedding, last_seen, cameras FROM identities "
               f"WHERE global_id IN ({', '.join('?' * len(ids))})")  # fmt: skip
        rows = self._run(lambda conn: self._exec(conn, sql, ids).fetchall())
        return {int(row[0]): self._identity(row) for row in rows}

    def _identity_row(self, identity: Identity) -> tuple:
        """:data:`_PUT_IDENTITY`'s parameters, or a :class:`GalleryError` for a bad identity."""
        blob = None
        if identity.embedding is not None:
            blob = self._vectors(identity.embedding, f"identity {identity.global_id}")[0].tobytes()
        if not math.isfinite(identity.last_seen):
            raise GalleryError(f"identity {identity.global_id}: last_seen must be finite")
        cameras = json.dumps(sorted(identity.cameras, key=lambda c: (isinstance(c, str), c)))
        return int(identity.global_id), blob, float(identity.last_seen), cameras

    def put(self, identity: Identity) -> None:
        """Insert or replace the identity with this ``global_id``."""
        row = self._identity_row(identity)
        self._run(lambda conn: self._exec(conn, _PUT_IDENTITY, row))

    def bindings(self, camera: CameraId) -> dict[int, Binding]:
        """Track id -> binding, for every live track of ``camera``."""
        return self._run(lambda conn: self._camera_bindings(conn, camera))

    def _camera_bindings(self, conn: Connection, camera: CameraId) -> dict[int, Binding]:
        sql = "SELECT track_id, global_id, frames, last_seen FROM bindings WHERE camera = ?"
        rows = self._exec(conn, sql, (json.dumps(camera),)).fetchall()
        return {int(t): Binding(int(g), int(f), float(s)) for t, g, f, s in rows}

    def bind(self, camera: CameraId, track_id: int, binding: Binding) -> None:
        row = _binding_row(camera, track_id, binding)
        self._run(lambda conn: self._exec(conn, _BIND, row))

    def record(self, camera: CameraId, bindings: Mapping[int, Binding], identities: Iterable[Identity]) -> None:
        """A frame's writes in one transaction: each track of ``camera`` bound and each identity inserted or
        replaced (every identity checked first: a bad one writes nothing)."""
        puts = [self._identity_row(identity) for identity in identities]
        binds = [_binding_row(camera, track_id, binding) for track_id, binding in bindings.items()]

        def write(conn: Connection) -> None:
            for sql, rows in ((_PUT_IDENTITY, puts), (_BIND, binds)):
                if rows:
                    conn.cursor().executemany(self._sql(sql), rows)

        self._run(write)

    def release(self, camera: CameraId, track_ids: Iterable[int] | None = None) -> None:
        """Forget bindings of the given tracks of ``camera`` (all of them when None)."""
        key = json.dumps(camera)
        tracks = None if track_ids is None else [int(t) for t in track_ids]

        def forget(conn: Connection) -> None:
            if tracks is None:
                self._exec(conn, "DELETE FROM bindings WHERE camera = ?", (key,))
            for tid in tracks or ():
                self._exec(conn, "DELETE FROM bindings WHERE camera = ? AND track_id = ?", (key, tid))

        self._run(forget)

    def _drop_before(self, conn: Connection, before: float) -> None:
        self._exec(conn, "DELETE FROM identities WHERE last_seen < ?", (float(before),))
        self._exec(conn, "DELETE FROM bindings WHERE last_seen < ?", (float(before),))

    def expire(self, before: float) -> None:
        """Drop identities and bindings last seen before ``before``."""
        self._run(lambda conn: self._drop_before(conn, before))

    def live_bindings(self, camera: CameraId, before: float) -> dict[int, Binding]:
        """:meth:`expire` then :meth:`bindings` of ``camera``, in one transaction."""

        def read(conn: Connection) -> dict[int, Binding]:
            self._drop_before(conn, before)
            return self._camera_bindings(conn, camera)

        return self._run(read)


_PUT_IDENTITY = (
    "INSERT INTO identities (global_id, embedding, last_seen, cameras) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (global_id) DO UPDATE SET embedding = excluded.embedding, "
    "last_seen = excluded.last_seen, cameras = excluded.cameras"
)
_BIND = (
    "INSERT INTO bindings (camera, track_id, global_id, frames, last_seen) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (camera, track_id) DO UPDATE SET global_id = excluded.global_id, "
    "frames = excluded.frames, last_seen = excluded.last_seen"
)



def _binding_row(camera: CameraId, track_id: int, binding: Binding) -> tuple:
    """:data:`_BIND`'s parameters."""
    return json.dumps(camera), int(track_id), int(binding.global_id), int(binding.frames), float(binding.last_seen)


def _placeholders(dialect: Dialect) -> Callable[[str], str]:
    """Our SQL's ``?`` parameter markers as the driver's (psycopg takes ``%s``)."""
    if dialect is POSTGRES:
        return lambda sql: sql.replace("?", "%s")
    return lambda sql: sql


def backend_for(database_url: str) -> Backend:
    """The backend a ``database_url`` names (see :func:`open_store`).

    Raises:
        GalleryError: a URL of another scheme.
    """
    url = database_url.strip()
    if url in ("", ":memory:", "sqlite://", "sqlite:///:memory:"):
        return SqliteBackend(":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(url)
    if url.startswith("sqlite:///"):
        return SqliteBackend(url[len("sqlite:///") :])  # sqlite:////abs keeps its leading "/"
    if "://" in url:
        raise GalleryError(
            f"database URL {redacted_url(url)!r}: expected '', sqlite:///PATH, a path or postgresql://"
        )
    return SqliteBackend(url)


def open_store(database_url: str, dim: int) -> SqlStore:
    """The ReID store ``database_url`` names, for embeddings of size ``dim``.

    Args:
        database_url: ``""`` in memory; ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or a bare
            path: a SQLite file (created when missing); ``postgresql://user[:password]@host:port/db``.
        dim: embedding size ``D``.

    Raises:
        GalleryError: a bad URL or ``dim``, psycopg missing for PostgreSQL, a database of another schema
            version or ``D``.
        StoreUnavailableError: the database cannot be reached.
    """
    return SqlStore(backend_for(database_url), dim)
