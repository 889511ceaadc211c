"""The identities step's own cost on this CPU: ``IdentityService.assign`` per camera frame, no server.

``python -m bench.identities [--cameras 64] [--tracks 10] [--frames 60] [--dim 512] [--repeat 3]
[--churn-frames 300] [--life 50] [--max-age-s 4] [--batch 64] [--store memory|sqlite|postgres]``

Each camera shows its own ``--tracks`` people for ``--frames`` frames (unit embeddings with noise, one
sequence per camera, the cameras interleaved frame by frame as a server sees them), twice: a first pass
into an empty gallery, then a second in which every camera restarts (its tracks are new and match the
gallery the first pass left: the case of people re-entering). A third, the steady state of a long run:
for ``--churn-frames`` frames at 25 frames/s each person leaves after ``--life`` frames and a new one takes
the place (a new track), identities expire after ``--max-age-s``, so that the gallery holds about
cameras x tracks x max-age x 25 / life of them and some expire at almost every frame (only ``assign`` is
timed, not the making of the frames). A fourth, the adapter: ``model_repository/identities/1/model.py``'s
``execute`` on the fake ``triton_python_backend_utils`` of the adapter tests (tests/adapters), the first
pass's frames signed as reid signs them and sent ``--batch`` requests an execute (one frame of each of
that many cameras), so that the per-request Python (token check, inputs, responses, metrics) counts too.
Prints the best of ``--repeat`` runs, ms a frame, for each pass. ``--store`` keeps the identities and
bindings of the first three passes in the durable store a ``database_url`` names instead of in memory: a
fresh SQLite file (WAL) a run, or a fresh database a run of a throwaway PostgreSQL cluster started from
Debian's server (``tests/integration/postgres.py``, ``make setup`` fetches it) over a local socket.
This is the Python a frame costs inside the single identities instance, which every frame of every
camera goes through with ReID on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_models import frame_tokens
from pipeline_models.reid.identity_step import IdentityService
from pipeline_models.reid.store import SqlStore, open_store
from pipeline_models.reid.unit_vectors import normalise_rows
from pipeline_models.settings import IdentitySettings, TrackerConfig, defaults

MODEL_PY = Path(__file__).resolve().parents[1] / "model_repository" / "identities" / "1" / "model.py"


def workload(cameras: int, tracks: int, frames: int, dim: int, seed: int = 0) -> list[tuple[int, int, np.ndarray]]:
    """``(camera, frame, embeddings)`` in the order a server gets them."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(cameras * tracks, dim)).astype(np.float32)
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    out = []
    for frame in range(frames):
        for camera in range(cameras):
            seen = people[camera * tracks : (camera + 1) * tracks] + 0.05 * rng.normal(size=(tracks, dim))
            out.append((camera, frame, (seen / np.linalg.norm(seen, axis=1, keepdims=True)).astype(np.float32)))
    return out


#: A fresh store for a run (None: in memory), given the embedding size.
Stores = Callable[[int], Any]


def memory_store(dim: int) -> None:
    return None


def passes_ms(
    cameras: int, tracks: int, frames: int, dim: int, new_store: Stores = memory_store
) -> tuple[float, float]:
    """ms a frame of the first pass (empty gallery) and of the second (every camera restarted)."""
    service = IdentityService(IdentitySettings(), TrackerConfig().max_time_lost, store=new_store(dim))
    boxes = np.array([[100.0 * i, 100.0, 100.0 * i + 60, 260.0] for i in range(tracks)], np.float32)
    scores = np.full(tracks, 0.9, np.float32)
    ids = np.arange(1, tracks + 1, dtype=np.int64)
    work = workload(cameras, tracks, frames, dim)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for camera, frame, embeddings in work:
            service.assign(camera, frame / 25, ids, boxes, scores, embeddings, start=frame == 0)
        times.append(1e3 * (time.perf_counter() - start) / len(work))
    return times[0], times[1]


def churn_ms(
    cameras: int, tracks: int, frames: int, dim: int, life: int, max_age_s: float,
    new_store: Stores = memory_store,
) -> tuple[float, int]:
    """ms a frame of the steady state (see the module docstring) and the gallery's size at the end."""
    settings = IdentitySettings(max_age_s=max_age_s)
    service = IdentityService(settings, TrackerConfig().max_time_lost, store=new_store(dim))
    boxes = np.array([[100.0 * i, 100.0, 100.0 * i + 60, 260.0] for i in range(tracks)], np.float32)
    scores = np.full(tracks, 0.9, np.float32)
    rng = np.random.default_rng(1)
    # Person k of a camera slot is replaced every `life` frames, the slots staggered.
    phase = rng.integers(0, life, size=(cameras, tracks))
    looks: dict[tuple[int, int, int], np.ndarray] = {}
    seconds = 0.0
    for frame in range(frames):
        for camera in range(cameras):
            generation = (frame + phase[camera]) // life
            ids = (generation * tracks + np.arange(tracks) + 1).astype(np.int64)
            rows = []
            for slot, g in enumerate(generation.tolist()):
                look = looks.get((camera, slot, g))
                if look is None:
                    looks.pop((camera, slot, g - 1), None)
                    look = looks[(camera, slot, g)] = normalise_rows(rng.normal(size=(1, dim)))[0]
                rows.append(look + 0.05 * rng.normal(size=dim) / dim**0.5)
            embeddings = normalise_rows(np.stack(rows))
            start = time.perf_counter()
            service.assign(camera, frame / 25, ids, boxes, scores, embeddings, start=frame == 0)
            seconds += time.perf_counter() - start
    return 1e3 * seconds / (frames * cameras), len(service.identities.store.gallery())


def fake_triton() -> Any:
    """The adapter tests' fake ``triton_python_backend_utils``, installed as the real one, and a frame
    secret in the environment (as the launcher gives every model process)."""
    from tests.adapters import fake_pb_utils

    os.environ.setdefault(frame_tokens.SECRET_ENV, frame_tokens.new_secret())
    return sys.modules.setdefault("triton_python_backend_utils", fake_pb_utils)


def identities_adapter() -> Any:
    """``identities``' ``TritonPythonModel`` initialised on :func:`fake_triton`, with the default settings
    and the gallery in memory."""
    fake_pb_utils = fake_triton()
    spec = importlib.util.spec_from_file_location("identities_model", MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = {**defaults(IdentitySettings), **defaults(TrackerConfig)}
    parameters = {key: {"string_value": str(value)} for key, value in values.items()}
    config = {"name": "identities", "instance_group": [{"count": 1}], "parameters": parameters}
    model = module.TritonPythonModel()
    model.initialize(fake_pb_utils.model_args("identities", config, str(MODEL_PY.parents[1])))
    return model


def adapter_requests(cameras: int, tracks: int, frames: int, dim: int) -> list[Any]:
    """The first pass's frames as the identities requests reid sends (signed, START on each first frame)."""
    fake_pb_utils = fake_triton()
    secret = frame_tokens.load_secret()
    boxes = np.array([[[100.0 * i, 100.0, 100.0 * i + 60, 260.0] for i in range(tracks)]], np.float32)
    scores = np.full((1, tracks), 0.9, np.float32)
    ids = np.arange(1, tracks + 1, dtype=np.int64)
    requests = []
    for camera, frame, embeddings in workload(cameras, tracks, frames, dim):
        token = frame_tokens.sign(secret, frame_tokens.EMBEDDINGS, camera + 1, ids, embeddings)
        inputs = {"TRACK_IDS": ids[None], "TRACK_BOXES": boxes, "TRACK_SCORES": scores,
                  "EMBEDDINGS": embeddings[None], "TOKEN": token[None]}  # fmt: skip
        flags = fake_pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START if frame == 0 else 0
        requests.append(fake_pb_utils.InferenceRequest(inputs, corrid=camera + 1, request_flags=flags))
    return requests


def adapter_ms(cameras: int, tracks: int, frames: int, dim: int, batch: int) -> float:
    """ms a frame of the adapter's ``execute`` over the first pass, ``batch`` requests a call (the metric
    calls it defers included: the time ends once they are done)."""
    model = identities_adapter()
    from pipeline_models.triton.custom_metrics import DEFERRED  # it imports pb_utils: after the fake
    requests = adapter_requests(cameras, tracks, frames, dim)
    start = time.perf_counter()
    for first in range(0, len(requests), batch):
        for answer in model.execute(requests[first : first + batch]):
            if answer.has_error():
                raise RuntimeError(answer.error.message())
    DEFERRED.flush()
    return 1e3 * (time.perf_counter() - start) / len(requests)


@contextlib.contextmanager
def stores(kind: str) -> Iterator[Stores]:
    """Fresh stores of ``kind`` (memory, sqlite, postgres), each closed and its database gone at the end."""
    if kind == "memory":
        yield memory_store
        return
    opened = []
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-identities-")))
            urls = (f"sqlite:///{work / f'reid-{k}.sqlite'}" for k in itertools.count())
        else:
            from tests.integration.postgres import missing, running_postgres

            if reason := missing():
                raise SystemExit(f"bench.identities: {reason}")
            cluster = stack.enter_context(running_postgres())
            urls = (cluster.create_database(f"bench_{k}") for k in itertools.count())

        def new_store(dim: int) -> SqlStore:
            opened.append(open_store(next(urls), dim))
            return opened[-1]

        try:
            yield new_store
        finally:
            for store in opened:
                store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=64)
    parser.add_argument("--tracks", type=int, default=10, help="people a camera frame")
    parser.add_argument("--frames", type=int, default=60, help="frames a camera, each pass")
    parser.add_argument("--dim", type=int, default=512, help="embedding size D")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--churn-frames", type=int, default=300, help="frames a camera of the steady state")
    parser.add_argument("--life", type=int, default=50, help="frames a person stays, steady state")
    parser.add_argument("--max-age-s", type=float, default=4.0, help="identity expiry, steady state")
    parser.add_argument("--batch", type=int, default=64, help="requests an execute, adapter pass")
    parser.add_argument("--store", choices=("memory", "sqlite", "postgres"), default="memory",
                        help="where identities and bindings live (the first three passes)")
    args = parser.parse_args(argv)
    counts = (args.cameras, args.tracks, args.frames, args.dim, args.repeat, args.churn_frames, args.life)
    if min(*counts, args.batch) < 1:
        parser.error("every count must be at least 1")
    with stores(args.store) as new_store:
        runs = [passes_ms(args.cameras, args.tracks, args.frames, args.dim, new_store)
                for _ in range(args.repeat)]  # fmt: skip
        first, second = (min(r[k] for r in runs) for k in (0, 1))
        print(f"identities ({args.store} store): {args.cameras} cameras x {args.tracks} tracks, D={args.dim}, "
              f"{args.frames} frames a camera, best of {args.repeat}: {first:.3f} ms a frame into an empty "
              f"gallery, {second:.3f} ms a frame re-entering a gallery of {args.cameras * args.tracks}")
        churn = [churn_ms(args.cameras, args.tracks, args.churn_frames, args.dim, args.life, args.max_age_s,
                          new_store) for _ in range(args.repeat)]  # fmt: skip
    ms, gallery = min(churn)
    print(f"  steady state, {args.churn_frames} frames a camera, people leaving after {args.life} frames, expiry "
          f"{args.max_age_s:g} s: {ms:.3f} ms a frame (a gallery of {gallery} at the end)")
    adapter = min(adapter_ms(args.cameras, args.tracks, args.frames, args.dim, args.batch)
                  for _ in range(args.repeat))  # fmt: skip
    print(f"  adapter execute (fake pb_utils), {args.batch} requests a call, empty gallery: "
          f"{adapter:.3f} ms a frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
