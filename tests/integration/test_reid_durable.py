"""ReID with a durable store on a real tritonserver (``database_url``; the OSNet x0.25 fixture):

- SQLite file: global ids allocated in one server run continue after a restart on the same file (none
  reused, the people seen before found again); a person enrolled through the store API while the server is
  down is named on their track after the restart, and the track's sightings are recorded.
- Enrolment and search through the ``people`` model and ``pipeline-people``: enrol (the detector's largest
  person, or given boxes), list, delete, search by photo, each bad input refused with its reason and
  nothing stored, and the enrolment still there after a restart.
- PostgreSQL (the throwaway cluster of ``tests/integration/postgres.py``): two tritonservers sharing one
  database hand out distinct global ids; a camera moved from one to the other (failover) keeps its
  people's global ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.people import main as people_main
from pipeline_client.people import people_call
from pipeline_client.sources import video_jpegs
from pipeline_config.render import render
from pipeline_models.reid.crops import crop_batch
from pipeline_models.reid.embedder import Embedder
from pipeline_models.reid.store import open_store
from pipeline_server.server import Ports, TritonServer, free_ports
from pipeline_tools.local_pipeline import LocalPipeline
from tests.integration.postgres import missing, running_postgres
from tests.integration.test_reid import FIXTURE, assert_aligned_and_distinct
from tests.integration.two_views import stream
from tests.unit.sample_data import data_path

pytestmark = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"ReID test model {FIXTURE} absent")
FRAMES = 12
D = 512


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return video_jpegs(data_path("vtest.avi"), FRAMES)


@pytest.fixture(scope="module")
def later_jpegs() -> list[bytes]:
    """Frames half a minute later: other people."""
    return video_jpegs(data_path("vtest.avi"), 360)[-FRAMES:]


def served(repository: Path, log: Path) -> TritonServer:
    server = TritonServer(repository, Ports(*free_ports(3)), log_path=log, startup_timeout_s=180)
    server.start()
    return server


def person_embedding(jpeg: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The first frame's highest-scoring track: its box and its embedding as reid computes it."""
    tracks = LocalPipeline.from_profile("cpu").track(99, jpeg, start=True)
    box = tracks.xyxy[int(np.argmax(tracks.scores))]
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return box, Embedder(FIXTURE).embed(crop_batch(frame, box[np.newaxis], (256, 128), bgr=True))[0]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_sqlite_ids_continue_and_enrolments_name_tracks_after_a_restart(tmp_path, jpegs, later_jpegs):
    database = tmp_path / "reid.db"
    overrides = {"reid_model": str(FIXTURE), "database_url": f"sqlite:///{database}"}
    repository = render("cpu", tmp_path / "repo", overrides)
    server = served(repository, tmp_path / "log1.txt")
    try:
        before = stream(server.grpc_url, 1, jpegs)
    finally:
        server.stop()
    first_ids = {int(g) for f in before for g in f["GLOBAL_IDS"]}
    assert first_ids and all(name == b"" for f in before for name in f["NAMES"])  # nobody enrolled yet

    box, look = person_embedding(jpegs[0])
    with open_store(f"sqlite:///{database}", D) as store:
        store.enrol("walker", look, now=0.0)

    server = served(repository, tmp_path / "log2.txt")
    try:
        after = stream(server.grpc_url, 1, jpegs)
        others = stream(server.grpc_url, 2, later_jpegs)
    finally:
        server.stop()
    for i, frame in enumerate(after + others):
        assert_aligned_and_distinct(frame, f"after the restart, frame {i}")
    new = {int(g) for f in after + others for g in f["GLOBAL_IDS"]} - first_ids
    assert new and min(new) > max(first_ids), (sorted(first_ids), sorted(new))  # the ids go on, none reused
    same = sum(np.sum(a["GLOBAL_IDS"] == b["GLOBAL_IDS"]) for a, b in zip(before, after, strict=True))
    assert same >= 0.5 * sum(len(a["GLOBAL_IDS"]) for a in before)  # the stored gallery found them again

    first = after[0]
    walker = int(np.argmax([iou(b, box) for b in first["BOXES"]]))
    assert iou(first["BOXES"][walker], box) > 0.9
    assert first["NAMES"].tolist() == [b"walker" if i == walker else b"" for i in range(len(first["NAMES"]))]
    walker_track = int(first["TRACK_IDS"][walker])
    named = [f for f in after if walker_track in f["TRACK_IDS"].tolist()]
    carried = sum(f["NAMES"][f["TRACK_IDS"].tolist().index(walker_track)] == b"walker" for f in named)
    assert carried >= 0.8 * len(named), f"{carried} of {len(named)} frames"
    assert all(list(f["NAMES"]).count(b"walker") <= 1 for f in after)  # one name per frame
    with open_store(f"sqlite:///{database}", D) as store:
        seen = store.search_sightings(look, top_k=1)
    assert seen and seen[0].camera == 1 and seen[0].global_id == int(first["GLOBAL_IDS"][walker])


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator:
    reason = missing()
    if reason:
        pytest.fail(reason)
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pg_url(pg_cluster) -> str:
    return pg_cluster.create_database("reid_two_servers")


def test_two_servers_sharing_postgresql_allocate_distinct_global_ids(tmp_path, jpegs, later_jpegs, pg_url):
    # similarity_thresh 1: no track joins an identity the other server stored, so every track gets a new
    # id from the shared sequence; they must never collide. The cameras differ: a camera id names one
    # camera for every server of the database (its track bindings are stored under it), and so do the
    # frames (the very same crops would give the very same embeddings: similarity 1).
    overrides = {"reid_model": str(FIXTURE), "database_url": pg_url, "similarity_thresh": "1.0"}
    repository = render("cpu", tmp_path / "repo", overrides)
    servers = [served(repository, tmp_path / f"log{i}.txt") for i in range(2)]
    videos = [jpegs, later_jpegs]
    try:
        results: dict[int, list] = {}
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, stream(servers[i].grpc_url, i + 1, videos[i])))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for server in servers:
            server.stop()
    ids = [{int(g) for f in results[i] for g in f["GLOBAL_IDS"]} for i in range(2)]
    assert ids[0] and ids[1] and not ids[0] & ids[1], ids
    with open_store(pg_url, D) as store:
        assert store.allocate_id() > max(ids[0] | ids[1])


def test_a_camera_moved_to_another_server_keeps_its_peoples_global_ids(tmp_path, pg_cluster):
    """Issue 20's failover with issue 18's shared store: camera 7 streams on server A; A stops; the camera's
    next frames start a new sequence on server B (as the gateway moves it). Track ids restart there, but the
    people it was seeing keep their global ids: B finds their identities in the PostgreSQL that A wrote."""
    url = pg_cluster.create_database("reid_failover")
    repository = render("cpu", tmp_path / "repo", {"reid_model": str(FIXTURE), "database_url": url})
    frames = video_jpegs(data_path("vtest.avi"), 40)
    a, b = (served(repository, tmp_path / f"log{i}.txt") for i in range(2))
    try:
        on_a = stream(a.grpc_url, 7, frames[:20])
        a.stop()  # the server dies; its camera moves
        on_b = stream(b.grpc_url, 7, frames[20:])
    finally:
        a.stop()
        b.stop()
    assert list(on_b[0]["TRACK_IDS"]) == list(range(1, len(on_b[0]["TRACK_IDS"]) + 1)), "a new sequence on B"
    # The people B sees in its first half second were mostly on A a moment before: their ids come back.
    seen_on_a = {int(g) for frame in on_a for g in frame["GLOBAL_IDS"]}
    early_on_b = {int(g) for frame in on_b[:5] for g in frame["GLOBAL_IDS"]}
    kept = early_on_b & seen_on_a
    assert len(kept) >= 2 and len(kept) >= 0.75 * len(early_on_b), (seen_on_a, early_on_b)
    for frame in on_b:
        assert_aligned_and_distinct(frame, "on server B")


def blank_jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))
    assert ok
    return encoded.tobytes()


def refused(client, reason: str, message: str, *args, **kwargs) -> None:
    with pytest.raises(InferenceServerException, match=message) as error:
        people_call(client, *args, **kwargs)
    assert f"[{reason}]" in str(error.value), error.value


def test_enrol_list_search_and_delete_through_the_server_survive_a_restart(tmp_path, jpegs, capsys):
    database = tmp_path / "people.db"
    overrides = {"reid_model": str(FIXTURE), "database_url": f"sqlite:///{database}"}
    repository = render("cpu", tmp_path / "repo", overrides)
    photo = tmp_path / "walker.jpg"
    photo.write_bytes(jpegs[0])
    tracks = LocalPipeline.from_profile("cpu").track(98, jpegs[0], start=True)
    frame = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    looks = Embedder(FIXTURE).embed(crop_batch(frame, tracks.xyxy, (256, 128), bgr=True))
    sim = looks @ looks.T
    a, b = np.unravel_index(np.argmin(sim), sim.shape)
    assert sim[a, b] < 0.7  # two people who do not look alike
    areas = (tracks.xyxy[:, 2] - tracks.xyxy[:, 0]) * (tracks.xyxy[:, 3] - tracks.xyxy[:, 1])
    largest = tracks.xyxy[int(np.argmax(areas))]

    server = served(repository, tmp_path / "log1.txt")
    try:
        url = server.grpc_url
        assert people_main(["--url", url, "enrol", "--name", "walker", str(photo)]) == 0
        assert "enrolled walker (1 embeddings" in capsys.readouterr().out
        with grpcclient.InferenceServerClient(url) as client:
            out = people_call(client, "enrol", name="walker", photos=[jpegs[0]])  # another photo: added
            np.testing.assert_allclose(out["BOXES"][0], largest, atol=1e-3)  # the detector's largest person
            assert out["COUNTS"].tolist() == [2]
            refused(client, "no_person", "no person found", "enrol", name="x", photos=[blank_jpeg()])
            refused(client, "corrupt", "photo 1: IMAGE is", "enrol", name="x", photos=[jpegs[0][:4000]])
            refused(client, "bad_request", "non-empty", "enrol", name=" ", photos=[jpegs[0]])
            refused(client, "bad_request", "at most 256", "enrol", name="n" * 300, photos=[jpegs[0]])
            refused(client, "bad_request", "do not look like one person", "enrol", name="two",
                    photos=[jpegs[0], jpegs[0]], boxes=tracks.xyxy[[a, b]])
            refused(client, "bad_request", "nobody is enrolled as 'ghost'", "delete", name="ghost")
            refused(client, "bad_request", "COMMAND 'dance'", "dance")
            listed = people_call(client, "list")
            assert listed["NAMES"].tolist() == [b"walker"] and listed["COUNTS"].tolist() == [2]  # nothing added
        frames = stream(url, 1, jpegs)
        walker = int(np.argmax([iou(box, largest) for box in frames[0]["BOXES"]]))
        assert frames[0]["NAMES"][walker] == b"walker"
        walker_gid = int(frames[0]["GLOBAL_IDS"][walker])
    finally:
        server.stop()

    server = served(repository, tmp_path / "log2.txt")
    try:
        assert people_main(["--url", server.grpc_url, "list"]) == 0
        assert capsys.readouterr().out.strip() == "walker\t2 embeddings"  # survived the restart
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            found = people_call(client, "search", photos=[jpegs[0]], boxes=largest[np.newaxis], top_k=5)
            assert len(found["GLOBAL_IDS"]) >= 1 and found["GLOBAL_IDS"][0] == walker_gid
            assert found["CAMERAS"][0] == b"1" and found["SIMILARITIES"][0] > 0.9
            assert np.all(np.diff(found["SIMILARITIES"]) <= 0)
        assert people_main(["--url", server.grpc_url, "search", str(photo)]) == 0
        assert f"camera 1\tglobal id {walker_gid}" in capsys.readouterr().out
        assert people_main(["--url", server.grpc_url, "delete", "--name", "walker"]) == 0
        assert people_main(["--url", server.grpc_url, "delete", "--name", "walker"]) == 1
        assert "nobody is enrolled as 'walker'" in capsys.readouterr().err
    finally:
        server.stop()
