"""Where a loaded server's CPU goes, for the benchmarks: CPU seconds of tritonserver and of each
python-backend stub over a timed run, and optionally py-spy's samples of each stub (``py-spy`` on PATH).

A stub's CPU share near 1.0 (one core) with its model's executions back to back is the step that bounds
the pipeline; py-spy's top frames then say which of its lines take the time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipeline_server.procstat import PROC, stub_processes

#: py-spy's samples a second.
PY_SPY_RATE = 100


def stat_fields(stat: Path) -> list[str] | None:
    """A ``/proc/<pid>/stat`` after the command, split: state(0) ppid pgrp session(3) ... utime(11)
    stime(12) (the command may hold spaces and parentheses); None if the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_ticks(fields: list[str]) -> int:
    """User + system clock ticks of :func:`stat_fields`' process."""
    return int(fields[11]) + int(fields[12])


def process_cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """User + system CPU seconds of one process (all its threads); 0 if it is gone."""
    fields = stat_fields(proc / str(pid) / "stat")
    return 0.0 if fields is None else cpu_ticks(fields) / os.sysconf("SC_CLK_TCK")


def server_processes(server_pid: int) -> dict[str, int]:
    """``tritonserver`` itself and each stub instance (e.g. ``tracker_0_0``) -> pid."""
    return {"tritonserver": server_pid, **stub_processes(server_pid)}


def cpu_snapshot(processes: dict[str, int], proc: Path = PROC) -> dict[str, float]:
    """CPU seconds of each named process now."""
    return {name: process_cpu_seconds(pid, proc) for name, pid in processes.items()}


def cpu_shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each process used between two snapshots ``seconds`` apart (1.0: one core all the time)."""
    return {name: (after[name] - before.get(name, 0.0)) / seconds for name in after if seconds > 0}


def format_shares(shares: dict[str, float]) -> str:
    """``name cores`` pairs, the busiest first."""
    return ", ".join(f"{name} {share:.2f}" for name, share in sorted(shares.items(), key=lambda kv: -kv[1]))


def start_py_spy(
    processes: dict[str, int], seconds: float, out_dir: Path, flags: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` of each stub for ``seconds`` into ``out_dir/<instance>.txt`` (raw collapsed stacks;
    more ``flags``: ``--idle`` for waiting threads too, ``--native`` for C/C++ frames; what py-spy says goes
    to ``<instance>.log``); none when py-spy is not on PATH."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in processes.items():
        if name == "tritonserver":
            continue
        with open(out_dir / f"{name}.log", "wb") as said:  # the child keeps its own descriptor
            spies.append(subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(PY_SPY_RATE),
                 "--format", "raw", "--nonblocking", *flags, "--output", str(out_dir / f"{name}.txt")],
                stdout=said, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    return spies


def top_frames(raw: str, count: int = 8, samples: int | None = None) -> list[tuple[str, float]]:
    """The functions the most samples were in (innermost frame, i.e. self time) in py-spy's raw output
    (``frame;frame;... count`` lines), each with its share of ``samples`` (default: all samples read)."""
    own: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            own[stack.rsplit(";", 1)[-1]] += int(n)
    total = samples or sum(own.values()) or 1
    return [(frame, n / total) for frame, n in own.most_common(count)]


def py_spy_report(out_dir: Path, seconds: float, count: int = 8) -> str:
    """Each recorded stub's top frames, as shares of its wall time (a thread busy all the time: 100%); for a
    stub py-spy recorded nothing of, the last line py-spy said (e.g. that it may not attach)."""
    lines = []
    for log in sorted(out_dir.glob("*.log")):
        samples = log.with_suffix(".txt")
        if not samples.is_file() or not samples.stat().st_size:
            said = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            lines.append(f"    {log.stem}: py-spy recorded nothing: {said[-1] if said else 'it said nothing'}")
            continue
        frames = top_frames(samples.read_text(), count, samples=int(seconds * PY_SPY_RATE))
        lines.append(f"    {log.stem}: " + "; ".join(f"{share:.0%} {frame}" for frame, share in frames))
    return "\n".join(lines)


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads)."""
    times = os.times()
    return times.user + times.system


class RunProfile:
    """The cores each process of a server used over one timed run (and this one, the bench's client, as
    ``client``), and py-spy's samples of its stubs (``py_spy_s`` seconds from the start, into ``out_dir``,
    with ``py_spy_flags``; none for 0)."""

    def __init__(
        self, server_pid: int, py_spy_s: float = 0, out_dir: Path | None = None, py_spy_flags: Sequence[str] = ()
    ) -> None:
        self.processes = server_processes(server_pid)
        self.py_spy_s, self.out_dir, self.py_spy_flags = py_spy_s, out_dir, tuple(py_spy_flags)
        self._cpu: dict[str, float] = {}
        self._spies: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self._cpu = {**cpu_snapshot(self.processes), "client": own_cpu_seconds()}
        if self.py_spy_s and self.out_dir is not None:
            self._spies = start_py_spy(self.processes, self.py_spy_s, self.out_dir, self.py_spy_flags)

    def stop(self, seconds: float) -> str:
        """The cores each process used over the ``seconds`` since start, then py-spy's top frames."""
        now = {**cpu_snapshot(self.processes), "client": own_cpu_seconds()}
        cores = cpu_shares(self._cpu, now, seconds)
        for spy in self._spies:
            spy.wait()
        report = f"    cores: {format_shares(cores)}"
        if self._spies and self.out_dir is not None:
            report += "\n" + py_spy_report(self.out_dir, self.py_spy_s)
        return report
