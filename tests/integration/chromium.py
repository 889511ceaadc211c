"""Debian 12's Chromium (``make chromium``, unpacked under .cache/chromium), run headless for one page.

Each run gets a fresh profile folder and its own process group, killed whole if it overruns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from pipeline_config import paths

HOME = Path(os.environ.get("CHROMIUM_HOME", paths.project_root() / ".cache" / "chromium"))
BINARY = HOME / "usr" / "lib" / "chromium" / "chromium"
LIBDIR = HOME / "usr" / "lib" / "x86_64-linux-gnu"
# Root cannot use the sandbox; no GPU here; scrollbars would cover part of the page.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run")


def missing() -> str | None:
    """Why Chromium cannot run here (None when it is in place)."""
    if not BINARY.is_file():
        return f"{BINARY} is missing: run `make chromium` (part of `make setup`)"
    return None


def run(url: str, *args: str, timeout_s: float = 60.0) -> str:
    """Run Chromium headless on ``url`` with ``args`` (``--dump-dom``, ``--screenshot=PATH``); its stdout.

    Raises:
        RuntimeError: Chromium failed or overran ``timeout_s`` (then its process group is killed).
    """
    env = {**os.environ, "LD_LIBRARY_PATH": f"{LIBDIR}:{LIBDIR / 'pulseaudio'}"}
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(
            [str(BINARY), *FLAGS, f"--user-data-dir={profile}", *args, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: the browser and its helpers
            process.communicate()
            raise RuntimeError(f"chromium did not finish {url} in {timeout_s:.0f} s") from None
        finally:
            with contextlib.suppress(ProcessLookupError):  # helpers left behind by the browser, if any
                os.killpg(process.pid, signal.SIGKILL)
    if process.returncode != 0:
        raise RuntimeError(f"chromium exited {process.returncode} on {url}: {err[-2000:]}")
    return out
