"""Frame sources: directories, generated videos, JPEG encoding, look-ahead and the broadcast."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline_client.sources import (
    Broadcast,
    encode_frames,
    encode_jpeg,
    iter_frames,
    iter_image_dir,
    parse_source,
    source_fps,
    source_length,
    with_last_flag,
)

H, W = 48, 64


def _frame(level: int) -> np.ndarray:
    image = np.full((H, W, 3), level, np.uint8)
    image[:, :, 2] = 255 - level  # distinct channels catch BGR/RGB swaps
    return image


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    # Written out of name order, with a non-image file that must be ignored.
    for name, level in [("b.png", 20), ("c.png", 30), ("a.png", 10)]:
        assert cv2.imwrite(str(tmp_path / name), _frame(level))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (W, H))
    assert writer.isOpened()
    for i in range(12):
        writer.write(_frame(20 * i))
    writer.release()
    return path


def test_parse_source_kinds(image_dir: Path, video: Path) -> None:
    assert parse_source(str(image_dir)).kind == "images"
    assert parse_source("2").kind == "webcam" and parse_source("2").target == 2
    assert parse_source(str(video)).kind == "capture"
    assert parse_source("rtsp://camera.local/stream").kind == "capture"
    with pytest.raises(FileNotFoundError):
        parse_source(str(image_dir / "missing.mp4"))


def test_image_dir_sorted_and_exact(image_dir: Path) -> None:
    frames = list(iter_image_dir(image_dir))
    assert [int(f[0, 0, 0]) for f in frames] == [10, 20, 30]
    np.testing.assert_array_equal(frames[0], _frame(10))
    assert source_length(parse_source(str(image_dir))) == 3
    assert source_fps(parse_source(str(image_dir))) is None


def test_unreadable_image_is_skipped(image_dir: Path) -> None:
    (image_dir / "0_broken.jpg").write_bytes(b"not a jpeg")
    assert [int(f[0, 0, 0]) for f in iter_image_dir(image_dir)] == [10, 20, 30]


def test_video_frames_in_order(video: Path) -> None:
    source = parse_source(str(video))
    frames = list(iter_frames(source))
    assert len(frames) == 12
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    levels = [float(f[:, :, 0].mean()) for f in frames]
    np.testing.assert_allclose(levels, [20 * i for i in range(12)], atol=4)
    assert source_length(source) == 12
    assert source_fps(source) == pytest.approx(12.0)


def test_max_frames(video: Path, image_dir: Path) -> None:
    assert len(list(iter_frames(parse_source(str(video)), max_frames=5))) == 5
    assert len(list(iter_frames(parse_source(str(image_dir)), max_frames=2))) == 2


def test_capture_that_cannot_open(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(OSError):
        next(iter_frames(parse_source(str(bogus))))


def test_encode_jpeg_round_trip() -> None:
    image = _frame(100)
    jpeg = encode_jpeg(image, quality=95)
    assert jpeg[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image.astype(int)).max() <= 3
    assert len(encode_jpeg(np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8), 10)) < len(
        encode_jpeg(np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8), 95)
    )


def test_encode_frames_indexes() -> None:
    encoded = list(encode_frames([_frame(1), _frame(2)]))
    assert [e.index for e in encoded] == [0, 1]
    assert encoded[1].image[0, 0, 0] == 2


@pytest.mark.parametrize(
    ("items", "expected"),
    [([], []), ([7], [(7, True)]), ([1, 2, 3], [(1, False), (2, False), (3, True)])],
)
def test_with_last_flag(items: list[int], expected: list[tuple[int, bool]]) -> None:
    assert list(with_last_flag(items)) == expected


def _consume_all(feed: Broadcast[int], k: int) -> list[list[int]]:
    got: list[list[int]] = [[] for _ in range(k)]

    def read(i: int) -> None:
        got[i].extend(feed.consumer(i))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return got


def test_broadcast_every_consumer_gets_everything_in_order() -> None:
    with Broadcast(range(100), 3, depth=2) as feed:
        got = _consume_all(feed, 3)
    assert got == [list(range(100))] * 3


def test_broadcast_reraises_source_errors() -> None:
    def failing():
        yield 1
        raise OSError("camera unplugged")

    with Broadcast(failing(), 2) as feed:
        for i in range(2):
            consumer = feed.consumer(i)
            assert next(consumer) == 1
            with pytest.raises(OSError, match="unplugged"):
                next(consumer)


def test_broadcast_consumer_leaving_early_does_not_block_others() -> None:
    with Broadcast(range(50), 2, depth=1) as feed:
        early = feed.consumer(0)
        assert next(early) == 0
        early.close()
        rest = list(feed.consumer(1))
    assert rest == list(range(50))
