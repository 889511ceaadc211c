import cv2
import numpy as np
import pytest

from pipeline_models.errors import InvalidInputError
from pipeline_models.preprocess import decode_image


def test_decodes_jpeg_and_png_to_bgr():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 2] = 200  # red in BGR
    for ext in (".jpg", ".png"):
        decoded = decode_image(cv2.imencode(ext, image)[1].tobytes())
        assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8
        assert abs(int(decoded[10, 15, 2]) - 200) <= 3 and decoded[10, 15, 0] <= 3


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"\xff\xd8\xff\xe0garbage", "corrupt JPEG")])
def test_bad_bytes_are_invalid_input(data, match):
    with pytest.raises(InvalidInputError, match=match):
        decode_image(data)
