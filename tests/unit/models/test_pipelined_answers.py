"""``PipelinedDetector``'s answers with ReID on: each job its own frame's embeddings, and a failure of the
embedding (at launch, on waiting, a short result) or of the batch fails exactly the jobs it concerns.

Torch runs in the export environment (``make export-venv``, through ``pipelined_answers_reference``) on the
CPU, with the real ``launch_embeddings`` and the ReID test model; the assertions run here.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from tests.unit.models.reid.walkers import FIXTURE
from tests.unit.sample_data import REPO

EXPORT_PY = REPO / ".cache" / "export-venv" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not FIXTURE.is_file(), reason=f"ReID test model absent ({FIXTURE}); it lives in the shared fixtures"
)


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    out = tmp_path_factory.mktemp("answers")
    assert EXPORT_PY.is_file(), "run `make export-venv`"
    proc = subprocess.run(
        [str(EXPORT_PY), "-m", "tests.unit.models.pipelined_answers_reference", str(out), str(FIXTURE)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "answers.json").read_text())


def test_only_the_jobs_that_ask_get_embeddings_each_of_its_own_frame(answers):
    plain, one, two = answers["real"]
    assert plain["parts"] == 2 and plain["embeddings"] is None
    assert one["parts"] == two["parts"] == 3
    assert len(one["boxes"]) == 2 and len(two["boxes"]) == 3
    for got, want in zip((one, two), answers["direct"]):  # as embed_frames gives them, frame by frame
        np.testing.assert_allclose(np.array(got["embeddings"], np.float64), want, rtol=0, atol=1e-6)
    rows = np.array(two["embeddings"], np.float64)
    assert np.isnan(rows[2]).all() and np.isfinite(rows[:2]).all()  # the box that shows no pixels
    np.testing.assert_allclose(np.linalg.norm(rows[:2], axis=1), 1.0, atol=1e-5)


#: Slack between a thread's CPU clock and the wall clock over one call (ms).
CLOCKS_MS = 0.05


def test_the_stage_stats_count_the_embedding_and_the_cpu_its_queueing_took(answers):
    stats = answers["real_stats"]
    assert stats["embed_calls"] == 1 and stats["crops"] == 5  # two jobs asked: 2 + 3 boxes
    # One thread's CPU time within its wall time, up to the two clocks' disagreement: the scheduler's CPU
    # clock and the monotonic one are read a few microseconds apart (2.4 us over, seen on a 2-core box).
    assert 0 < stats["embed_cpu_ms"] <= stats["embed_ms"] * 1.01 + CLOCKS_MS
    assert "crops, queued in" in stats["summary"] and "of the thread's CPU" in stats["summary"]


@pytest.mark.parametrize(
    ("case", "message"),
    [("launch_fails", "embedding broke"), ("result_fails", "copy broke"), ("short", "1 frames' embeddings for 2"),
     ("no_embed", "pipeline without embed")],
)
def test_a_failed_embedding_fails_the_jobs_that_asked_and_answers_the_others(answers, case, message):
    plain, one, two = answers[case]
    assert plain["parts"] == 2 and len(plain["boxes"]) == 2  # the detect ensemble's job is answered
    for job in (one, two):
        assert message in job["error"], job


def test_a_failed_batch_fails_every_job_without_embedding_and_none_asking_never_embeds(answers):
    assert all(job["error"] == "RuntimeError: detect broke" for job in answers["batch_failed"])
    assert [job["parts"] for job in answers["none_ask"]] == [2, 2, 2]  # the broken embed was never called
