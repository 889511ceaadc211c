"""GPU stages against the CPU reference maths (run by `make test-gpu` on a CUDA machine)."""

import numpy as np
import pytest
import torch

from pipeline_models.gpu.detector import GraphedYolox, bucket_for
from pipeline_models.gpu.preprocess import decode_images, letterbox_batch
from pipeline_models.gpu.yolox import random_yolox

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = torch.device("cuda")


def _jpeg(rng, h, w):
    from torchvision.io import encode_jpeg

    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=rng) * 255, size=(h, w), mode="bilinear")
    return bytes(encode_jpeg(smooth[0].to(torch.uint8), quality=95).numpy())


def test_decode_matches_cpu_decoder_and_reports_bad_items():
    from torchvision.io import decode_jpeg

    rng = torch.Generator().manual_seed(1)
    datas = [_jpeg(rng, 240, 320), _jpeg(rng, 120, 200)]
    out = decode_images(datas + [b"not an image"], DEVICE)
    assert isinstance(out[2], Exception)
    for data, gpu in zip(datas, out[:2]):
        cpu = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        assert gpu.shape == cpu.shape
        diff = gpu.cpu().float() - cpu.float()
        # nvJPEG and libjpeg-turbo upsample chroma differently (an H200 gave a mean |diff| of 4.6 on this
        # image): bound the spread loosely and the bias tightly.
        assert diff.abs().mean() < 6.0 and abs(float(diff.mean())) < 1.0


@pytest.mark.parametrize("legacy", [True, False])
def test_letterbox_matches_cpu_letterbox(legacy):
    from pipeline_models.preprocess import letterbox

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(480, 640), (1080, 1920), (480, 640)]]
    rgb = [torch.from_numpy(im[..., ::-1].copy()).permute(2, 0, 1).to(DEVICE) for im in images]
    batch, meta = letterbox_batch(rgb, (640, 640), legacy=legacy, dtype=torch.float32)
    scale = 1 / (255 * 0.225) if legacy else 1.0
    for i, image in enumerate(images):
        ref, ratio = letterbox(image, (640, 640), legacy=legacy)
        diff = np.abs(batch[i].cpu().numpy() - ref)
        assert meta[i].tolist() == pytest.approx([image.shape[0], image.shape[1], ratio])
        assert diff.mean() < 1.0 * scale and np.percentile(diff, 99) < 4.0 * scale


def test_bucket_for():
    assert [bucket_for(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError):
        bucket_for(9, (1, 2, 4, 8))


def test_graphed_yolox_matches_fp32_eager_model():
    runner = GraphedYolox("yolox_s", 1, device=DEVICE, buckets=(1, 4), seed=5)
    x = torch.randn(5, 3, 640, 640, device=DEVICE)
    out = runner.infer(x)  # chunks 4 + 1; the 4-bucket pads nothing, then a batch-1 graph
    out3 = runner.infer(x[:3])  # padded into the 4-bucket
    ref_model = random_yolox("yolox_s", 1, seed=5)
    with torch.no_grad():
        ref = ref_model.to(DEVICE)(x)
    assert out.shape == (5, 8400, 6) and out.dtype == torch.float32
    rel = (out - ref).norm() / ref.norm()
    assert rel < 1e-2, rel
    torch.testing.assert_close(out3, out[:3], rtol=0, atol=1e-3)
