"""Linux ``/proc`` readings of a server and its python-backend stubs (for health checks and soak runs)."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def child_processes(pid: int) -> dict[int, list[str]]:
    """Direct children of ``pid``: child pid -> its command line (argv)."""
    children: dict[int, list[str]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == pid:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                children[int(entry.name)] = [a.decode(errors="replace") for a in argv if a]
        except (OSError, ValueError):
            continue  # the process went away while we looked
    return children


def stub_processes(server_pid: int) -> dict[str, int]:
    """Python-backend stubs of a ``tritonserver``: instance name (e.g. ``tracker_0_0``) -> pid."""
    stubs = {}
    for pid, argv in child_processes(server_pid).items():
        if argv and argv[0].endswith("triton_python_backend_stub") and len(argv) >= 9:
            stubs[argv[8]] = pid
    return stubs


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (``VmRSS``), 0 if it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(server_pid: int) -> int:
    """RSS of the server plus its direct children (the stubs)."""
    return rss_bytes(server_pid) + sum(rss_bytes(pid) for pid in child_processes(server_pid))


def all_command_lines() -> dict[int, list[str]]:
    """Every process's command line (argv): pid -> argv (kernel threads, with none, are left out)."""
    commands: dict[int, list[str]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                argv = [
                    a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a
                ]
            except OSError:
                continue
            if argv:
                commands[int(entry.name)] = argv
    return commands


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``R``, ``S``, ``D``, ``T``, ``t``, ``Z``, ...), None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (zombies included: they still need reaping)."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                members.append(int(entry.name))
    return sorted(members)
