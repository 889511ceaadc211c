"""A real, throwaway PostgreSQL cluster for tests: Debian's server (``make postgres``) in a temporary folder.

``initdb`` into a fresh folder, ``pg_ctl start`` on a free port of 127.0.0.1 with its unix socket in that
folder, trust authentication for the test user only; stopped and removed at the end, also when a test
fails. PostgreSQL refuses to run as root, so as root the cluster runs as ``nobody``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline_config import paths
from pipeline_server.server import free_ports

#: The unpacked Debian packages (scripts/fetch_postgres.sh); POSTGRES_HOME points elsewhere.
HOME = Path(os.environ.get("POSTGRES_HOME", paths.project_root() / ".cache" / "postgres"))
BINDIR = HOME / "usr" / "lib" / "postgresql" / "15" / "bin"
LIBDIR = HOME / "usr" / "lib" / "x86_64-linux-gnu"
USER = "reid"
HBA = f"local all {USER} trust\nhost all {USER} 127.0.0.1/32 trust\n"


def missing() -> str | None:
    """Why the cluster cannot start here (None when the binaries are in place)."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if not (BINDIR / name).is_file():
            return f"{BINDIR / name} is missing: run `make postgres` (a dependency of `make test`)"
    return None


@dataclass
class Cluster:
    """A running cluster: ``url`` of its ``postgres`` database as the trusted test user."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            [str(BINDIR / args[0]), *args[1:]], check=False, env=_env(), capture_output=True, text=True,
            timeout=timeout,
            **_as_unprivileged(),
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def start(self) -> None:
        """``pg_ctl start``, waiting until it accepts connections."""
        # fsync off (fast) still keeps a killed server's commits: they are in the OS's cache, and only a crash
        # of the machine loses that. GMT is built into postgres: no tzdata files needed.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c jit=off -c timezone=GMT -c log_timezone=GMT "
            # dynamic shared memory in the data directory, not /dev/shm: a postmaster killed by a test
            # leaves its segments where the cluster's folder is removed, not in /dev/shm
            "-c dynamic_shared_memory_type=mmap"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start"
        )

    def stop(self) -> None:
        """``pg_ctl stop`` (immediate); nothing when it is not running."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def kill(self) -> None:
        """``kill -9`` the postmaster and every backend (its process group), and wait until they are gone."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGKILL) if group == pid else os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _in_group(group) and time.monotonic() < deadline:
            _reap(group)
            time.sleep(0.05)
        if _in_group(group, zombies=False):
            raise RuntimeError(f"postgres processes of group {group} survived SIGKILL")
        # A zombie postmaster not yet reaped (by init, in a container maybe never, or by this process when a
        # TritonServer made it a child subreaper) still "holds" the data directory's and the socket's lock
        # files (postgres sees its pid alive): it is dead, so clear them.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for leftover in self.root.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _reap(group: int) -> None:
    """Reaps the dead processes of ``group`` that are this process's children (orphans it adopted as a
    subreaper); others are init's."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-group, os.WNOHANG)[0]:
            pass


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LD_LIBRARY_PATH"] = str(LIBDIR)
    env["TZ"] = "GMT"
    return env


def _as_unprivileged() -> dict:
    """subprocess arguments that run the server as ``nobody`` when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _in_group(group: int, zombies: bool = True) -> bool:
    """Whether any process of ``group`` is still there (a zombie counts only when ``zombies``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == group and (zombies or fields[0] != "Z"):
            return True
    return False


@contextlib.contextmanager
def running_postgres() -> Iterator[Cluster]:
    """A fresh cluster, started; stopped and its folder removed on exit (also after a failure)."""
    reason = missing()
    if reason:
        raise FileNotFoundError(reason)
    root = Path(tempfile.mkdtemp(prefix="reid-pg-"))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    cluster = Cluster(root, free_ports(1)[0])
    try:
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", USER, "--auth=trust", "--no-locale", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        (cluster.data / "pg_hba.conf").write_text(HBA)  # the test user only: every other role is refused
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
