"""Checks of an encoded frame from its header alone, before any pixel is decoded (no OpenCV, no numpy).

Shared by the CPU preprocess (OpenCV decode) and the GPU preprocess (nvJPEG decode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline_models.errors import InvalidInputError, Reason
from pipeline_models.settings import ImageLimits

DEFAULT_LIMITS = ImageLimits()

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4/C8/CC are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field: TEM and RST0..RST7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class JpegLayout:
    """What the segment walk of a JPEG found: its size and how many scans it has."""

    height: int
    width: int
    scans: int
    progressive: bool


def _corrupt(what: str) -> InvalidInputError:
    return InvalidInputError(f"IMAGE is a corrupt JPEG ({what})", Reason.CORRUPT)


#: Inside entropy-coded data a 0xFF byte is followed by 0x00 (stuffing), RST0..RST7 (restart markers, part
#: of the scan) or more 0xFF fill bytes; any other byte after 0xFF is the marker that ends the scan.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
_RESTART_CYCLE = bytes(range(0xD0, 0xD8))


def _skip_entropy_data(data: bytes, pos: int, count_restarts: bool) -> tuple[int, int]:
    """``(position of the marker that ends the entropy-coded data at pos, restart markers in it)``.

    Searched in C (``re``): the scan data is most of a frame's bytes. Restart markers are counted only when asked
    (the frame has a restart interval); they must run RST0..RST7 in turn.

    Raises:
        InvalidInputError: restart markers out of their cycle (``corrupt``).
    """
    found = _SCAN_END.search(data, pos)
    end = found.start() if found else len(data)
    if not count_restarts:
        return end, 0
    sequence = b"".join(_RESTART.findall(data, pos, end))[1::2]
    if sequence != (_RESTART_CYCLE * (len(sequence) // 8 + 1))[: len(sequence)]:
        raise _corrupt(f"restart markers out of their RST0..RST7 cycle in the scan at byte {pos}")
    return end, len(sequence)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class _Frame:
    """A start-of-frame segment: size and, per component id, its sampling factors ``(h, v)``."""

    height: int
    width: int
    sampling: dict[int, tuple[int, int]]
    progressive: bool

    def scan_mcus(self, components: list[int]) -> int:
        """MCUs in a scan of ``components`` (T.81 A.2: one block per MCU in a non-interleaved scan)."""
        h_max = max(h for h, _ in self.sampling.values())
        v_max = max(v for _, v in self.sampling.values())
        if len(components) > 1:
            return _ceil_div(self.width, 8 * h_max) * _ceil_div(self.height, 8 * v_max)
        h, v = self.sampling.get(components[0], (h_max, v_max))
        return _ceil_div(_ceil_div(self.width * h, h_max), 8) * _ceil_div(
            _ceil_div(self.height * v, v_max), 8
        )


def _read_frame(data: bytes, pos: int, marker: int) -> _Frame:
    segment = data[pos + 4 : pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")]
    if len(segment) < 6 or len(segment) < 6 + 3 * segment[5]:
        raise _corrupt(f"short frame header at byte {pos}")
    sampling = {
        segment[6 + 3 * i]: (segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15) for i in range(segment[5])
    }
    if not sampling or any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling.values()):
        raise _corrupt(f"bad components in the frame header at byte {pos}")
    height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
    return _Frame(height, width, sampling, marker in (0xC2, 0xC6, 0xCA, 0xCE))


def jpeg_layout(data: bytes, max_scans: int | None = None) -> JpegLayout:
    """Walks a JPEG's segments, and over each scan's entropy-coded data, up to the end-of-image marker.

    Structure checked on the way (what a decoder would otherwise paper over with grey): every scan
    follows the frame header; with a restart interval, each scan's restart markers run RST0..RST7 in
    order and are as many as its MCUs need, so a file cut in the middle (even with an end marker
    appended) is refused. Without restart markers the length of a scan's data cannot be checked without
    Huffman decoding.

    Args:
        data: the encoded bytes, starting with SOI.
        max_scans: refuse as soon as there are more start-of-scan segments than this (None: no limit).

    Raises:
        InvalidInputError: too many scans (``too_large``); no frame header, a scan before it, a bad
            segment length, restart markers missing or out of order (``corrupt``).
    """
    pos, scans, frame, restart_interval = len(JPEG_SOI), 0, None, 0
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            raise _corrupt(f"no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:  # end of image
            break
        if pos + 4 > len(data):
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            raise _corrupt(f"segment length {length} at byte {pos}")
        if pos + 2 + length > len(data):
            break  # truncated inside a segment: refused by the caller's end-marker check
        if marker in _JPEG_SOF and frame is None:
            frame = _read_frame(data, pos, marker)
        elif marker == 0xDD and length >= 4:  # define restart interval
            restart_interval = int.from_bytes(data[pos + 4 : pos + 6], "big")
        segment_start, pos = pos, pos + 2 + length
        if marker != 0xDA:
            continue
        if frame is None:
            raise _corrupt("a scan before the frame header")
        scans += 1
        if max_scans is not None and scans > max_scans:
            raise InvalidInputError(
                f"IMAGE is too costly to decode: a JPEG of more than {max_scans} scans "
                f"(the limit; {frame.width}x{frame.height} pixels)",
                Reason.TOO_LARGE,
            )
        pos, restarts = _skip_entropy_data(data, pos, restart_interval > 0)
        if restart_interval and frame.height and frame.width:
            count = data[segment_start + 4] if length > 2 else 0
            components = list(data[segment_start + 5 : segment_start + 5 + 2 * count : 2])
            needed = _ceil_div(frame.scan_mcus(components or [0]), restart_interval) - 1
            if restarts < needed:
                raise _corrupt(
                    f"scan {scans} has {restarts} restart markers of the {needed} its MCUs need: "
                    "data is missing"
                )
    if frame is None:
        raise InvalidInputError(
            f"IMAGE is a truncated or corrupt JPEG (no frame header in {len(data)} bytes)", Reason.CORRUPT
        )
    return JpegLayout(frame.height, frame.width, scans, frame.progressive)


def encoded_image_size(data: bytes, max_jpeg_scans: int | None = None) -> tuple[str, int, int]:
    """Format and size of an encoded image from its headers alone (no pixel is decoded).

    Args:
        data: the encoded bytes.
        max_jpeg_scans: refuse a JPEG of more scans (see :func:`jpeg_layout`; None: no limit).

    Returns:
        ``(format, height, width)`` with format ``"jpeg"`` or ``"png"``.

    Raises:
        InvalidInputError: empty, not JPEG/PNG, the header is truncated or corrupt, too many scans.
    """
    if not data:
        raise InvalidInputError("IMAGE is empty (0 bytes)", Reason.EMPTY)
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidInputError(
                f"IMAGE is a truncated or corrupt PNG (no IHDR in {len(data)} bytes)", Reason.CORRUPT
            )
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return "png", height, width
    if data.startswith(JPEG_SOI):
        layout = jpeg_layout(data, max_jpeg_scans)
        return "jpeg", layout.height, layout.width
    raise InvalidInputError(
        f"IMAGE is not a JPEG or PNG ({len(data)} bytes, starts {data[:4].hex()})", Reason.NOT_IMAGE
    )


def check_encoded_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> tuple[str, int, int]:
    """Refuse an encoded frame before decoding it: bytes, format, dimensions, area, scans, completeness.

    A JPEG must end with its end-of-image marker and a PNG with its ``IEND`` chunk (trailing zero
    padding allowed), so a truncated frame is refused instead of decoding to a half-grey image. A JPEG of
    more than ``limits.max_jpeg_scans`` scans is refused from the segment walk, before the decoder sees it:
    a decode cannot be interrupted, and a repeated refinement scan costs a full pass over the image.

    Args:
        data: the encoded bytes.
        limits: the limits (default: ``ImageLimits()``).

    Returns:
        ``(format, height, width)`` as read from the header.

    Raises:
        InvalidInputError: naming what is wrong and the limit it broke.
    """
    if len(data) > limits.max_image_bytes:
        raise InvalidInputError(
            f"IMAGE is too large: {len(data)} bytes, the limit is {limits.max_image_bytes} bytes",
            Reason.TOO_LARGE,
        )
    fmt, height, width = encoded_image_size(data, limits.max_jpeg_scans)
    if height < 1 or width < 1:
        raise InvalidInputError(f"IMAGE {fmt} header gives an empty size {width}x{height}", Reason.CORRUPT)
    if max(height, width) > limits.max_image_side:
        raise InvalidInputError(
            f"IMAGE is too large: {width}x{height} pixels, "
            f"the limit is {limits.max_image_side} pixels a side",
            Reason.TOO_LARGE,
        )
    if height * width > limits.max_image_pixels:
        raise InvalidInputError(
            f"IMAGE is too large: {width}x{height} = {height * width} pixels, the limit is "
            f"{limits.max_image_pixels} pixels",
            Reason.TOO_LARGE,
        )
    tail = data.rstrip(b"\x00")
    if fmt == "jpeg" and not tail.endswith(JPEG_EOI):
        raise InvalidInputError(
            f"IMAGE is a truncated JPEG (no end-of-image marker; {len(data)} bytes)", Reason.CORRUPT
        )
    if fmt == "png" and not tail.endswith(PNG_IEND):
        raise InvalidInputError(
            f"IMAGE is a truncated PNG (no IEND chunk; {len(data)} bytes)", Reason.CORRUPT
        )
    return fmt, height, width
