"""The python backend's shared-memory regions in ``/dev/shm``: one name format, and their cleanup.

Each server's regions are named ``triton_<launcher pid>_<http port>_<uuid>`` (``region_prefix``), so a
region can be traced to the launcher that started its server. ``stop`` removes its own server's regions;
``remove_stale_regions`` (at start) removes the regions of crashed runs: launcher gone and no live process
naming the prefix on its command line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline_server.procstat import all_command_lines, process_state

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
_REGION = re.compile(r"^(?P<prefix>triton_(?P<pid>\d+)_(?P<port>\d+)_)")


def region_prefix(launcher_pid: int, http_port: int) -> str:
    """The ``shm-region-prefix-name`` of a server started by ``launcher_pid`` on ``http_port``."""
    return f"triton_{launcher_pid}_{http_port}_"


def parse_region(name: str) -> tuple[str, int] | None:
    """``(prefix, launcher pid)`` of a region name in ``region_prefix``'s format, else None."""
    match = _REGION.match(name)
    return (match["prefix"], int(match["pid"])) if match else None


def stale_regions(names: Iterable[str], alive: Callable[[int], bool], prefixes_in_use: set[str]) -> list[str]:
    """The region names (ours by format) whose launcher is not ``alive`` and whose prefix no live
    process uses (a server that outlived its launcher still maps its regions)."""
    stale = []
    for name in names:
        parsed = parse_region(name)
        if parsed and not alive(parsed[1]) and parsed[0] not in prefixes_in_use:
            stale.append(name)
    return sorted(stale)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts as gone)."""
    return process_state(pid) not in (None, "Z", "X")


def prefixes_in_use(command_lines: Iterable[list[str]]) -> set[str]:
    """Region prefixes that running processes name: a server's ``shm-region-prefix-name=`` argument,
    a stub's region argument."""
    used = set()
    for argv in command_lines:
        for arg in argv:
            parsed = parse_region(arg.rpartition("shm-region-prefix-name=")[2])
            if parsed:
                used.add(parsed[0])
    return used


def regions(prefix: str, shm_dir: Path = SHM_DIR) -> list[Path]:
    """The regions whose name starts with ``prefix``."""
    try:
        return sorted(p for p in shm_dir.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _unlink(paths: Iterable[Path]) -> list[str]:
    removed = []
    for path in paths:
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("cannot remove shared memory region %s: %s", path, error)
    return removed


def remove_regions(prefix: str, shm_dir: Path = SHM_DIR) -> list[str]:
    """Removes the regions of one server (call after it exited); returns the names removed."""
    if not prefix:
        raise ValueError("an empty prefix would match every region")
    return _unlink(regions(prefix, shm_dir))


def remove_region(name: str, shm_dir: Path = SHM_DIR) -> bool:
    """Removes one region (by its exact name, which must be in ``region_prefix``'s format)."""
    if parse_region(name) is None or "/" in name:
        raise ValueError(f"not a region name of ours: {name!r}")
    return bool(_unlink([shm_dir / name]))


def remove_stale_regions(shm_dir: Path = SHM_DIR) -> list[str]:
    """Removes the regions left by crashed runs (see ``stale_regions``); returns the names removed."""
    try:
        names = [p.name for p in shm_dir.iterdir()]
    except OSError:
        return []
    if not any(parse_region(n) for n in names):
        return []
    stale = stale_regions(names, pid_alive, prefixes_in_use(all_command_lines().values()))
    removed = _unlink(shm_dir / name for name in stale)
    if removed:
        log.info("removed %d shared memory regions of crashed runs", len(removed))
    return removed
