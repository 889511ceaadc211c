"""Encoded test images that OpenCV cannot write: a CMYK JPEG (Adobe, 4 components), built by hand.

The encoder handles flat-colour images only: quantisation table of ones, every block DC-only (AC = EOB),
one 8x8 block per component per MCU, so the bitstream stays a few lines of code.
"""

from __future__ import annotations


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _entropy(n_blocks: int, levels: tuple[int, ...]) -> bytes:
    """Scan data: ``n_blocks`` MCUs of one DC-only block per component, then 1-padding and 0xFF stuffing."""
    bits: list[int] = []
    previous = [0] * len(levels)
    for _ in range(n_blocks):
        for c, level in enumerate(levels):
            dc = 8 * (level - 128)  # DCT DC of a flat 8x8 block after the level shift, quantised by 1
            diff, previous[c] = dc - previous[c], dc
            size = abs(diff).bit_length()
            bits += [int(b) for b in f"{size:04b}"]  # DC table: category s has the 4-bit code s
            if size:
                value = diff if diff >= 0 else diff + (1 << size) - 1
                bits += [int(b) for b in f"{value:0{size}b}"]
            bits.append(0)  # AC table: EOB has the 1-bit code 0
    bits += [1] * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i : i + 8])), 2)
        out.append(byte)
        if byte == 0xFF:
            out.append(0x00)
    return bytes(out)


def flat_cmyk_jpeg(height: int, width: int, cmyk: tuple[int, int, int, int]) -> bytes:
    """A baseline JPEG with 4 components (Adobe APP14, transform 0) of one flat colour.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        cmyk: the four stored 8-bit component values (Adobe files store them inverted).
    """
    n_components = len(cmyk)
    adobe = b"Adobe" + (100).to_bytes(2, "big") + bytes(4) + bytes([0])
    dqt = bytes([0x00]) + bytes([1] * 64)
    sof = bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([n_components])
    sof += b"".join(bytes([c + 1, 0x11, 0]) for c in range(n_components))
    dht_dc = bytes([0x00]) + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12))
    dht_ac = bytes([0x10]) + bytes([1] + [0] * 15) + bytes([0x00])
    sos = (
        bytes([n_components])
        + b"".join(bytes([c + 1, 0x00]) for c in range(n_components))
        + bytes([0, 63, 0])
    )
    blocks = ((height + 7) // 8) * ((width + 7) // 8)
    return (
        b"\xff\xd8"
        + _segment(0xEE, adobe)
        + _segment(0xDB, dqt)
        + _segment(0xC0, sof)
        + _segment(0xC4, dht_dc)
        + _segment(0xC4, dht_ac)
        + _segment(0xDA, sos)
        + _entropy(blocks, cmyk)
        + b"\xff\xd9"
    )


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, start, end)`` of each segment after SOI; a scan's end includes its entropy-coded data."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            while data[end] != 0xFF or data[end + 1] == 0x00 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1 if data[end] != 0xFF else 2
        out.append((marker, pos, end))
        pos = end
    return out


def scan_bomb(progressive_jpeg: bytes, repeats: int) -> bytes:
    """A progressive JPEG whose last scan (a refinement) is repeated ``repeats`` more times.

    Each repeat is a few bytes and costs the decoder a full pass over the image's coefficients.
    """
    segments = jpeg_segments(progressive_jpeg)
    _, start, end = [s for s in segments if s[0] == 0xDA][-1]
    eoi = segments[-1][1]
    return progressive_jpeg[:eoi] + progressive_jpeg[start:end] * repeats + b"\xff\xd9"


def cut_and_patched(jpeg: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` of a JPEG with an end-of-image marker appended (decoders fill the rest grey)."""
    return jpeg[: int(len(jpeg) * keep)] + b"\xff\xd9"


def middle_cut_out(jpeg: bytes) -> bytes:
    """A JPEG with its middle third removed (its end-of-image marker stays)."""
    return jpeg[: len(jpeg) // 3] + jpeg[2 * len(jpeg) // 3 :]


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF APP1 segment (big-endian TIFF, one IFD entry: Orientation) after its SOI."""
    entry = (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
    entry += orientation.to_bytes(2, "big") + bytes(2)
    tiff = b"MM\x00\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big") + entry + bytes(4)
    return jpeg[:2] + _segment(0xE1, b"Exif\x00\x00" + tiff) + jpeg[2:]
