"""bench.identities runs the real IdentityService on its synthetic cameras and refuses empty counts."""

import pytest

from bench import identities


def test_the_bench_prints_both_passes(capsys):
    assert identities.main(["--cameras", "2", "--tracks", "3", "--frames", "4", "--dim", "8", "--repeat", "1"]) == 0
    line = capsys.readouterr().out
    assert "2 cameras x 3 tracks, D=8" in line and "re-entering a gallery of 6" in line


def test_the_workload_is_every_camera_frame_by_frame_with_unit_embeddings():
    work = identities.workload(cameras=3, tracks=2, frames=2, dim=4)
    assert [(c, f) for c, f, _ in work] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    for _, _, embeddings in work:
        assert embeddings.shape == (2, 4) and abs(float((embeddings**2).sum(axis=1).max()) - 1) < 1e-5


def test_counts_below_one_are_refused():
    with pytest.raises(SystemExit):
        identities.main(["--cameras", "0"])
