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
    sos = bytes([n_components]) + b"".join(bytes([c + 1, 0x00]) for c in range(n_components)) + bytes([0, 63, 0])
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
