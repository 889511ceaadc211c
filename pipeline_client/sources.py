"""Frame sources: a video file or stream URL, a directory of images, or a webcam index.

Every iterator yields decoded BGR ``uint8`` frames of shape ``(H, W, 3)``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

Frame = npt.NDArray[np.uint8]
T = TypeVar("T")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source`` argument.

    Attributes:
        kind: ``"images"`` (a directory), ``"webcam"`` (an integer index) or ``"capture"`` (a video file
            or a stream URL such as ``rtsp://...``, opened with ``cv2.VideoCapture``).
        target: the directory path, the webcam index, or the file path / URL.
    """

    kind: str
    target: str | int


@dataclass(frozen=True)
class EncodedFrame:
    """One decoded frame and its JPEG encoding (what is sent to the server).

    Attributes:
        index: 0-based position in the source.
        image: ``(H, W, 3)`` BGR uint8 frame.
        jpeg: the JPEG bytes of ``image``.
    """

    index: int
    image: Frame
    jpeg: bytes


def parse_source(spec: str) -> SourceSpec:
    """Tell a directory, a webcam index and a video file / URL apart.

    Args:
        spec: the ``--source`` argument.

    Returns:
        The parsed source; an existing directory wins over a digit string.

    Raises:
        FileNotFoundError: ``spec`` looks like a local path (no ``://``) but does not exist.
    """
    path = Path(spec)
    if path.is_dir():
        return SourceSpec("images", str(path))
    if spec.isdigit():
        return SourceSpec("webcam", int(spec))
    if "://" not in spec and not path.exists():
        raise FileNotFoundError(f"source {spec!r} is neither a file, a directory, a URL nor a webcam index")
    return SourceSpec("capture", spec)


def list_images(directory: str | Path) -> list[Path]:
    """Image files of a directory, sorted by name (non-images are ignored)."""
    return sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def iter_image_dir(directory: str | Path) -> Iterator[Frame]:
    """Decode the images of a directory in sorted name order; unreadable files are skipped (logged)."""
    for path in list_images(directory):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            LOGGER.warning("skipping unreadable image %s", path)
            continue
        yield image


def iter_capture(target: str | int) -> Iterator[Frame]:
    """Decode frames from ``cv2.VideoCapture`` (video file, stream URL or webcam index) until it ends.

    Raises:
        OSError: the capture cannot be opened.
    """
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise OSError(f"cannot open video source {target!r}")
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()


def iter_frames(source: SourceSpec, max_frames: int | None = None) -> Iterator[Frame]:
    """Decoded frames of any source, at most ``max_frames`` of them (all when None)."""
    frames = iter_image_dir(source.target) if source.kind == "images" else iter_capture(source.target)
    for count, image in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            return
        yield image


def _capture_property(target: str | int, prop: int) -> float:
    """One property of a video capture (0 when it cannot be opened)."""
    capture = cv2.VideoCapture(target)
    try:
        return float(capture.get(prop)) if capture.isOpened() else 0.0
    finally:
        capture.release()


def source_fps(source: SourceSpec) -> float | None:
    """The frame rate the source reports, or None (image directories, streams that report 0)."""
    if source.kind == "images":
        return None
    fps = _capture_property(source.target, cv2.CAP_PROP_FPS)
    return fps if fps > 0 else None


def source_length(source: SourceSpec) -> int | None:
    """Number of frames when known in advance (image directories, video files), else None."""
    if source.kind == "images":
        return len(list_images(source.target))
    if source.kind == "webcam" or "://" in str(source.target):
        return None
    count = int(_capture_property(source.target, cv2.CAP_PROP_FRAME_COUNT))
    return count if count > 0 else None


def encode_jpeg(image: Frame, quality: int = 90) -> bytes:
    """JPEG-encode a BGR ``(H, W, 3)`` uint8 frame.

    Raises:
        ValueError: OpenCV could not encode the frame.
    """
    ok, buffer = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError(f"cannot JPEG-encode a frame of shape {image.shape}")
    return buffer.tobytes()


def video_jpegs(video: str | Path, count: int, quality: int = 90) -> list[bytes]:
    """The first ``count`` frames of a video file as JPEG bytes (fewer when the video is shorter).

    Raises:
        FileNotFoundError: ``video`` is not a file.
        OSError: the video cannot be opened.
    """
    if not Path(video).is_file():
        raise FileNotFoundError(f"{video} does not exist")
    return [encode_jpeg(frame, quality) for frame in itertools.islice(iter_capture(str(video)), count)]


def encode_frames(frames: Iterable[Frame], quality: int = 90) -> Iterator[EncodedFrame]:
    """Pair each decoded frame with its index and JPEG bytes."""
    for index, image in enumerate(frames):
        yield EncodedFrame(index, image, encode_jpeg(image, quality))


def with_last_flag(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Yield ``(item, is_last)``, looking one item ahead (so a live source's result lags one frame)."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


_END = object()


class Broadcast(Generic[T]):
    """Read one iterable once in a background thread and hand every item to ``k`` consumers.

    Each consumer gets its own bounded queue (``depth`` items), so consumers run concurrently but
    at most ``depth`` items apart. An exception raised by the producer is re-raised in every consumer.
    Use as a context manager so the producer stops when the consumers are done.
    """

    def __init__(self, items: Iterable[T], k: int, depth: int = 4) -> None:
        if k < 1:
            raise ValueError(f"need at least one consumer, got {k}")
        self._items = items
        self._queues: list[queue.Queue[object]] = [queue.Queue(maxsize=depth) for _ in range(k)]
        self._stop = threading.Event()
        self._closed = [threading.Event() for _ in range(k)]
        self._thread = threading.Thread(target=self._produce, name="frame-source", daemon=True)

    def __enter__(self) -> Broadcast[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the producer (consumers that are still reading see the end of the stream)."""
        self._stop.set()
        self._thread.join()

    def consumer(self, index: int) -> Iterator[T]:
        """The items for consumer ``index`` (0-based), in order."""
        q = self._queues[index]
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item  # type: ignore[misc]
        finally:
            # A consumer that stops early (closed, or its thread failed) no longer holds the others back.
            self._closed[index].set()

    def _put(self, index: int, item: object) -> bool:
        """Put ``item`` for consumer ``index``; False when stopping or that consumer has gone."""
        while not (self._stop.is_set() or self._closed[index].is_set()):
            try:
                self._queues[index].put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        final: object = _END
        try:
            for item in self._items:
                delivered = [self._put(i, item) for i in range(len(self._queues))]
                if self._stop.is_set() or not any(delivered):
                    break
        except Exception as error:  # noqa: BLE001 - handed over to the consumers
            final = _Failure(error)
        for index, q in enumerate(self._queues):
            if not self._put(index, final):
                # Stopping or gone while the consumer's queue is full: nobody reads it any more.
                _drain_one(q)
                q.put_nowait(final)


@dataclass(frozen=True)
class _Failure:
    error: Exception


def _drain_one(q: queue.Queue[object]) -> None:
    try:
        q.get_nowait()
    except queue.Empty:
        pass
