"""Shared-memory region names and which are stale (``pipeline_server.shm``), on a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline_server import shm
from pipeline_server.server import TritonServer


def test_the_server_uses_the_one_prefix_format(tmp_path: Path) -> None:
    server = TritonServer(tmp_path, log_path=tmp_path / "log")
    flag = next(a for a in server.command() if "shm-region-prefix-name=" in a)
    assert flag.endswith("=" + server.shm_prefix)
    assert shm.parse_region(server.shm_prefix + "uuid") == (server.shm_prefix, os.getpid())


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("triton_4652_18100_90e50923-5715", ("triton_4652_18100_", 4652)),
        ("triton_4652_18100_", ("triton_4652_18100_", 4652)),
        ("triton_x_18100_abc", None),
        ("triton_4652_abc", None),
        ("other_4652_18100_abc", None),
        ("sem.triton_1_2_x", None),
    ],
)
def test_parse_region(name, want) -> None:
    assert shm.parse_region(name) == want


def test_stale_regions() -> None:
    names = [
        "triton_1_80_a",
        "triton_1_80_b",
        "triton_2_80_a",
        "triton_3_81_a",
        "pulse-shm-1",
        "triton_4_9_z",
    ]
    alive = {2}.__contains__
    in_use = {"triton_3_81_"}  # launcher 3 is gone, but its server still runs
    assert shm.stale_regions(names, alive, in_use) == ["triton_1_80_a", "triton_1_80_b", "triton_4_9_z"]


def test_prefixes_in_use() -> None:
    argvs = [
        ["/x/bin/tritonserver", "--backend-config=python,shm-region-prefix-name=triton_3_81_"],
        ["/x/triton_python_backend_stub", "/r/m/1/model.py", "triton_5_90_uuid", "1"],
        ["bash"],
    ]
    assert shm.prefixes_in_use(argvs) == {"triton_3_81_", "triton_5_90_"}


def test_remove_regions_by_prefix(tmp_path: Path) -> None:
    for name in ("triton_1_80_a", "triton_1_80_b", "triton_1_800_a", "other"):
        (tmp_path / name).write_bytes(b"x")
    assert shm.remove_regions("triton_1_80_", tmp_path) == ["triton_1_80_a", "triton_1_80_b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "triton_1_800_a"]
    with pytest.raises(ValueError):
        shm.remove_regions("", tmp_path)


def test_remove_region_refuses_foreign_names(tmp_path: Path) -> None:
    (tmp_path / "triton_1_80_a").write_bytes(b"x")
    assert shm.remove_region("triton_1_80_a", tmp_path)
    assert not shm.remove_region("triton_1_80_a", tmp_path), "already gone"
    for bad in ("other", "../triton_1_80_a", "triton_1_80_/x"):
        with pytest.raises(ValueError):
            shm.remove_region(bad, tmp_path)


def test_remove_stale_regions_keeps_live_ones(tmp_path: Path) -> None:
    dead_pid = 2**22 + 12345  # above the default pid_max: never alive
    live = shm.region_prefix(os.getpid(), 1) + "a"
    dead = shm.region_prefix(dead_pid, 1) + "a"
    for name in (live, dead, "unrelated"):
        (tmp_path / name).write_bytes(b"x")
    assert shm.remove_stale_regions(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, "unrelated"])
