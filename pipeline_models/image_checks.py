"""Checks of an encoded frame from its header alone, before any pixel is decoded (no OpenCV, no numpy).

Shared by the CPU preprocess (OpenCV decode) and the GPU preprocess (nvJPEG decode).
"""

from __future__ import annotations

from pipeline_models.errors import InvalidInputError, Reason

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_IMAGE_SIDE = 8192

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4/C8/CC are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field: TEM and RST0..RST7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})



def _jpeg_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` from the first start-of-frame segment of a JPEG, reading headers only."""
    pos = len(JPEG_SOI)
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InvalidInputError(f"IMAGE is a corrupt JPEG (no marker at byte {pos})", Reason.CORRUPT)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            raise InvalidInputError(
                f"IMAGE is a corrupt JPEG (segment length {length} at byte {pos})", Reason.CORRUPT
            )
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return height, width
        pos += 2 + length
    raise InvalidInputError(
        f"IMAGE is a truncated or corrupt JPEG (no frame header in {len(data)} bytes)", Reason.CORRUPT
    )


def encoded_image_size(data: bytes) -> tuple[str, int, int]:
    """Format and size of an encoded image from its header alone (no pixel is decoded).

    Args:
        data: the encoded bytes.

    Returns:
        ``(format, height, width)`` with format ``"jpeg"`` or ``"png"``.

    Raises:
        InvalidInputError: empty, not JPEG/PNG, or the header is truncated or corrupt.
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
        height, width = _jpeg_size(data)
        return "jpeg", height, width
    raise InvalidInputError(
        f"IMAGE is not a JPEG or PNG ({len(data)} bytes, starts {data[:4].hex()})", Reason.NOT_IMAGE
    )


def check_encoded_image(
    data: bytes, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES, max_side: int = DEFAULT_MAX_IMAGE_SIDE
) -> tuple[str, int, int]:
    """Refuse an encoded frame before decoding it: size in bytes, format, dimensions, completeness.

    A JPEG must end with its end-of-image marker and a PNG with its ``IEND`` chunk (trailing zero
    padding allowed), so a truncated frame is refused instead of decoding to a half-grey image.

    Args:
        data: the encoded bytes.
        max_bytes: largest accepted encoded size.
        max_side: largest accepted width or height in pixels.

    Returns:
        ``(format, height, width)`` as read from the header.

    Raises:
        InvalidInputError: naming what is wrong and the limit it broke.
    """
    if len(data) > max_bytes:
        raise InvalidInputError(
            f"IMAGE is too large: {len(data)} bytes, the limit is {max_bytes} bytes", Reason.TOO_LARGE
        )
    fmt, height, width = encoded_image_size(data)
    if height < 1 or width < 1:
        raise InvalidInputError(f"IMAGE {fmt} header gives an empty size {width}x{height}", Reason.CORRUPT)
    if max(height, width) > max_side:
        raise InvalidInputError(
            f"IMAGE is too large: {width}x{height} pixels, the limit is {max_side} pixels a side",
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
