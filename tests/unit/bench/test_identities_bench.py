"""bench.identities runs the real IdentityService on its synthetic cameras and refuses empty counts."""

from pathlib import Path

import numpy as np
import pytest

from bench import identities
from pipeline_models.reid.identity_step import IdentityService
from pipeline_models.settings import IdentitySettings, TrackerConfig


def test_the_bench_prints_both_passes(capsys):
    assert identities.main(["--cameras", "2", "--tracks", "3", "--frames", "4", "--dim", "8", "--repeat", "1",
                            "--churn-frames", "10"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "2 cameras x 3 tracks, D=8" in out and "re-entering a gallery of 6" in out
    assert "steady state, 10 frames a camera" in out
    assert "adapter execute (fake pb_utils), 64 requests a call" in out


def test_the_steady_state_gallery_is_bounded_by_the_expiry():
    # 2 cameras x 3 slots, a new person every 5 frames at 25 frames/s, expiry 0.4 s (10 frames): the gallery
    # holds the people of about the last 10 frames (2-3 generations of 6), never all 6 x 12 seen in 60 frames.
    _, gallery = identities.churn_ms(cameras=2, tracks=3, frames=60, dim=8, life=5, max_age_s=0.4)
    assert 6 <= gallery <= 4 * 6


def test_the_workload_is_every_camera_frame_by_frame_with_unit_embeddings():
    work = identities.workload(cameras=3, tracks=2, frames=2, dim=4)
    assert [(c, f) for c, f, _ in work] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    for _, _, embeddings in work:
        assert embeddings.shape == (2, 4) and abs(float((embeddings**2).sum(axis=1).max()) - 1) < 1e-5


def test_counts_below_one_are_refused():
    with pytest.raises(SystemExit):
        identities.main(["--cameras", "0"])


def test_the_adapter_pass_answers_every_request_with_the_services_ids():
    # Its requests pass the adapter's token check (an error answer fails the pass) and get the ids the
    # service alone gives the same frames.
    requests = identities.adapter_requests(cameras=2, tracks=3, frames=3, dim=8)
    answers = identities.identities_adapter().execute(requests)
    service = IdentityService(IdentitySettings(), TrackerConfig().max_time_lost)
    frames = zip(identities.workload(2, 3, 3, 8), requests, strict=True)
    expected = [service.assign(camera + 1, frame / 25, np.arange(1, 4), r.inputs["TRACK_BOXES"][0],
                               r.inputs["TRACK_SCORES"][0], embeddings, start=frame == 0).global_ids.tolist()
                for (camera, frame, embeddings), r in frames]
    assert [a.output("GLOBAL_IDS").tolist() for a in answers] == expected
    assert identities.adapter_ms(cameras=2, tracks=3, frames=3, dim=8, batch=4) > 0


def test_the_sqlite_store_passes_use_a_fresh_file_each_run_and_give_the_memory_stores_ids():
    with identities.stores("sqlite") as new_store:
        first, second = new_store(8), new_store(8)
        assert first.backend.path != second.backend.path and first.gallery() == second.gallery() == []
        work = identities.workload(cameras=2, tracks=3, frames=3, dim=8)
        services = [IdentityService(IdentitySettings(), 30, store=s) for s in (None, first)]
        boxes, scores = np.array([[0, 0, 10, 20]] * 3, np.float32) * [[1], [2], [3]], np.full(3, 0.9, np.float32)
        for camera, frame, embeddings in work:
            ids = [s.assign(camera, frame / 25, np.arange(1, 4), boxes, scores, embeddings).global_ids.tolist()
                   for s in services]  # fmt: skip
            assert ids[0] == ids[1]
    assert not any(Path(s.backend.path).exists() for s in (first, second))  # the run's files are gone
