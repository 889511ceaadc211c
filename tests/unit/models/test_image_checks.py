"""Checks on encoded frames before decoding: format, size from headers, limits, truncation."""

import cv2
import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError
from pipeline_models.image_checks import check_encoded_image, encoded_image_size
from pipeline_models.preprocess import decode_image, letterbox, resize_rgb
from pipeline_models.settings import ImageLimits
from tests.image_samples import flat_cmyk_jpeg


def encode(ext: str, height: int, width: int, channels: int = 3) -> bytes:
    shape = (height, width) if channels == 1 else (height, width, channels)
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    return cv2.imencode(ext, image)[1].tobytes()


@pytest.mark.parametrize("ext,fmt", [(".jpg", "jpeg"), (".png", "png")])
@pytest.mark.parametrize("hw", [(1, 1), (37, 5), (480, 640)])
def test_header_size_matches_the_image(ext, fmt, hw):
    assert encoded_image_size(encode(ext, *hw)) == (fmt, *hw)


def test_progressive_jpeg_size_is_read():
    image = np.zeros((33, 70, 3), np.uint8)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert encoded_image_size(data) == ("jpeg", 33, 70)


def test_cmyk_jpeg_header_is_read():
    assert encoded_image_size(flat_cmyk_jpeg(24, 40, (0, 0, 0, 0))) == ("jpeg", 24, 40)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"not an image at all", "not a JPEG or PNG"),
        (cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes(), "not a JPEG or PNG"),
        (b"\xff\xd8\xff", "truncated or corrupt JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated or corrupt PNG"),
    ],
)
def test_bad_headers_are_refused(data, match):
    with pytest.raises(InvalidInputError, match=match):
        check_encoded_image(data)


@pytest.mark.parametrize("ext,what", [(".jpg", "truncated JPEG"), (".png", "truncated PNG")])
def test_truncated_images_are_refused(ext, what):
    data = encode(ext, 64, 64)
    with pytest.raises(InvalidInputError, match=what):
        check_encoded_image(data[: len(data) * 2 // 3])
    check_encoded_image(data + b"\x00" * 16)  # zero padding after the end marker is fine


def test_byte_limit_is_checked_before_anything_else():
    data = encode(".jpg", 64, 64)
    with pytest.raises(InvalidInputError, match=f"{len(data)} bytes, the limit is {len(data) - 1} bytes"):
        check_encoded_image(data, ImageLimits(max_image_bytes=len(data) - 1))
    check_encoded_image(data, ImageLimits(max_image_bytes=len(data)))


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_side_limit_uses_the_header(ext):
    data = encode(ext, 10, 65)
    with pytest.raises(InvalidInputError, match="65x10 pixels, the limit is 64 pixels a side"):
        check_encoded_image(data, ImageLimits(max_image_side=64))
    assert check_encoded_image(data, ImageLimits(max_image_side=65))[1:] == (10, 65)


def test_huge_declared_size_is_refused_without_decoding():
    """A 60000x60000 JPEG header on a few bytes: refused from the header, no allocation attempted."""
    data = bytearray(encode(".jpg", 8, 8))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    with pytest.raises(InvalidInputError, match="60000x60000 pixels"):
        decode_image(bytes(data))


def test_defaults_are_documented_values():
    limits = ImageLimits()
    assert limits.max_image_bytes == 20 * 1024 * 1024 and limits.max_image_side == 8192


@pytest.mark.parametrize(
    "data",
    [encode(".jpg", 12, 9, 1), encode(".png", 12, 9, 1), encode(".png", 12, 9, 4), flat_cmyk_jpeg(12, 9, (255, 0, 0, 255))],
    ids=["gray-jpeg", "gray-png", "bgra-png", "cmyk-jpeg"],
)
def test_other_colour_models_decode_to_bgr(data):
    image = decode_image(data)
    assert image.shape == (12, 9, 3) and image.dtype == np.uint8


def test_cmyk_jpeg_colour_survives():
    image = decode_image(flat_cmyk_jpeg(16, 16, (255, 0, 0, 255)))  # Adobe-inverted: pure red
    assert image[8, 8, 2] > 200 and image[8, 8, 0] < 30 and image[8, 8, 1] < 30


def test_one_pixel_image_goes_through_both_preprocessings():
    image = decode_image(encode(".png", 1, 1))
    tensor, ratio = letterbox(image, (640, 640))
    assert tensor.shape == (3, 640, 640) and ratio == 640.0
    assert resize_rgb(image).shape == (300, 300, 3)
