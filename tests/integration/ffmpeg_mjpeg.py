"""An HTTP MJPEG camera for tests: a real ffmpeg process (imageio-ffmpeg's static binary) serving a video,
looped, as ``multipart/x-mpjpeg`` to one client on ``http://127.0.0.1:PORT/``.

imageio-ffmpeg rather than Debian's ffmpeg: one static binary from the registry (pinned in
requirements.txt), where Debian's package brings about a hundred library packages to unpack.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import imageio_ffmpeg


class MjpegCamera:
    """``ffmpeg -readrate R -stream_loop -1 -i VIDEO -f mpjpeg -listen 1 http://127.0.0.1:PORT/``.

    Args:
        video: what it serves, looped.
        port: where it listens (the same on :meth:`start` after :meth:`kill`).
        readrate: the pace, in multiples of the video's own frame rate.
    """

    def __init__(self, video: Path, port: int, readrate: float = 1.0, log: Path | None = None) -> None:
        self.video, self.port, self.readrate, self.log = video, port, readrate, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> MjpegCamera:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
            "-readrate", str(self.readrate), "-stream_loop", "-1", "-i", str(self.video),
            "-an", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", self.url,
        ]  # fmt: skip
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
        finally:
            if self.log:
                out.close()
        return self

    def kill(self) -> None:
        """``kill -9`` (mid-stream: the client's connection drops)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> MjpegCamera:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
