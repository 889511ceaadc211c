"""The gpu_detector adapter on the CPU: its real ``model.py`` with stand-ins for torch and the GPU pipeline.

What it guards: every request is answered through its response sender with exactly the outputs it asked
for. The ``detect`` ensemble does not take ``TOKEN``; handing the sender an unrequested output killed the
gpu_detector stub on the H200 under 16 concurrent cameras (the python backend drops it with the GIL
released), and every request in flight went unanswered (docs/benchmarks.md, "The detect hang").
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from pipeline_config.render import render
from pipeline_models import frame_tokens
from pipeline_models.errors import InvalidInputError
from tests.adapters import fake_pb_utils
from tests.adapters.conftest import REPOSITORY
from tests.adapters.fake_pb_utils import InferenceRequest

SECRET = frame_tokens.load_secret()  # the one tests/adapters/conftest.py puts in the environment
DETECT_OUTPUTS = ("BOXES", "SCORES")  # what the detect ensemble's step asks for
PIPELINE_OUTPUTS = ("BOXES", "SCORES", "TOKEN")  # what the pipeline ensemble's step asks for


@dataclass
class Job:
    data: bytes
    done: object
    embed: bool = False


class StandInPipeline:
    """Takes the jobs as ``PipelinedDetector.submit`` does; the test answers them later, as its answer
    thread would (after ``execute`` has returned)."""

    def __init__(self, detector, input_hw, legacy, embed=None, **kwargs) -> None:
        self.jobs: list[Job] = []
        self.embed = embed

    def submit(self, jobs) -> None:
        self.jobs += jobs

    def close(self) -> None:
        pass


class StandInDetector:
    def __init__(self, **kwargs) -> None:
        self.graphs = types.SimpleNamespace(enabled=False)


class StandInEmbedder:
    """``gpu.reid.TorchEmbedder``'s signature; D = 3."""

    dim, network, half, max_batch, crops_in_graph = 3, "osnet", True, 8, False
    loaded: ClassVar[list[tuple]] = []

    def __init__(self, path, device, max_batch, *, half, compiled, crop_kernel) -> None:
        StandInEmbedder.loaded.append((Path(path).name, max_batch, half, compiled, crop_kernel))


def stand_in_reid() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        TorchEmbedder=StandInEmbedder, ReidCompileError=type("ReidCompileError", (RuntimeError,), {}),
        launch_embeddings=lambda embedder, frames, boxes: types.SimpleNamespace(
            result=lambda: [np.ones((len(b), embedder.dim), np.float32) for b in boxes]
        ),
    )


def load_gpu_detector(monkeypatch, tmp_path, **overrides):
    """The initialised adapter, loaded with torch and pipeline_models.gpu.* replaced for its import."""
    stand_ins = {
        "torch": types.SimpleNamespace(
            cuda=types.SimpleNamespace(set_device=lambda device: None),
            backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(allow_tf32=True)),
        ),
        "pipeline_models.gpu.detector": types.SimpleNamespace(GraphedDetector=StandInDetector),
        "pipeline_models.gpu.pipelined": types.SimpleNamespace(Job=Job, PipelinedDetector=StandInPipeline),
        "pipeline_models.gpu.torch_io": types.SimpleNamespace(model_device=lambda args: "cuda:0"),
        "pipeline_models.gpu.reid": stand_in_reid(),
    }
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    import pipeline_models.gpu

    monkeypatch.setattr(pipeline_models.gpu, "reid", stand_ins["pipeline_models.gpu.reid"], raising=False)
    path = REPOSITORY / "gpu_detector" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("gpu_detector_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    repo = render("gpu", tmp_path / "repo", {"max_batch_size": "8", "batch_buckets": "1,2,4,8", **overrides})
    text = (Path(repo) / "gpu_detector" / "config.pbtxt").read_text()
    config = json_format.MessageToDict(
        text_format.Parse(text, model_config_pb2.ModelConfig()), preserving_proto_field_name=True
    )
    for value in config["parameters"].values():  # Triton's JSON keeps empty strings, MessageToDict drops them
        value.setdefault("string_value", "")
    model = module.TritonPythonModel()
    model.initialize(fake_pb_utils.model_args("gpu_detector", config, str(repo / "gpu_detector")))
    return model


@pytest.fixture
def gpu_detector(monkeypatch, tmp_path):
    return load_gpu_detector(monkeypatch, tmp_path)


@pytest.fixture
def gpu_detector_reid(monkeypatch, tmp_path):
    onnx = tmp_path / "osnet.onnx"
    onnx.write_bytes(b"read by the stand-in embedder: not at all")
    StandInEmbedder.loaded.clear()
    return load_gpu_detector(monkeypatch, tmp_path, reid_model=str(onnx), reid_max_batch="96",
                             reid_crop_kernel="false")


def jpeg() -> bytes:
    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", image)[1].tobytes()


def image_request(data: bytes, outputs, camera=0) -> InferenceRequest:
    return InferenceRequest({"IMAGE": np.array([[data]], dtype=np.object_)}, corrid=camera, outputs=outputs)


def test_each_request_gets_exactly_the_outputs_it_asked_for(gpu_detector):
    detect, pipeline = image_request(jpeg(), DETECT_OUTPUTS), image_request(jpeg(), PIPELINE_OUTPUTS, camera=7)
    assert gpu_detector.execute([detect, pipeline]) is None
    assert [job.data for job in gpu_detector.pipeline.jobs] == [jpeg(), jpeg()]
    boxes = np.array([[1, 2, 30, 40]], np.float32)
    scores = np.array([0.9], np.float32)
    for job in gpu_detector.pipeline.jobs:  # as the answer thread does, once execute has returned
        job.done((boxes, scores))
    answer = detect.answer()
    assert {t.name() for t in answer.output_tensors} == set(DETECT_OUTPUTS)
    np.testing.assert_array_equal(answer.output("BOXES"), boxes)
    answer = pipeline.answer()
    assert {t.name() for t in answer.output_tensors} == set(PIPELINE_OUTPUTS)
    frame_tokens.verify(SECRET, answer.output("TOKEN"), frame_tokens.DETECTIONS, 7, boxes, scores)


def test_a_refused_frame_is_answered_at_once_with_its_error_only(gpu_detector):
    bad, good = image_request(b"\xff\xd8 not a jpeg", DETECT_OUTPUTS), image_request(jpeg(), DETECT_OUTPUTS)
    gpu_detector.execute([bad, good])
    assert bad.answer().has_error() and bad.answer().error.message().startswith("[corrupt]")
    assert not good.sender.sent and len(gpu_detector.pipeline.jobs) == 1  # answered later, by the pipeline


def test_the_fake_sender_refuses_an_unrequested_output():
    """The check above bites: a response holding TOKEN for a request that asked for BOXES and SCORES."""
    request = image_request(b"", DETECT_OUTPUTS)
    response = fake_pb_utils.InferenceResponse([fake_pb_utils.Tensor(n, np.zeros(1)) for n in PIPELINE_OUTPUTS])
    with pytest.raises(AssertionError, match="TOKEN"):
        request.get_response_sender().send(response, fake_pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def test_a_failure_while_building_the_answer_still_answers_the_request(gpu_detector, monkeypatch):
    """The pipeline only logs an exception of its callback: an answer that cannot be built must still leave
    as an INTERNAL error, or its client and the ensemble wait for ever."""
    request = image_request(jpeg(), PIPELINE_OUTPUTS, camera=3)
    gpu_detector.execute([request])

    def broken_sign(*args):
        raise RuntimeError("signing broke")

    monkeypatch.setattr(frame_tokens, "sign", broken_sign)
    (job,) = gpu_detector.pipeline.jobs
    job.done((np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
    error = request.answer().error
    assert error.code() == fake_pb_utils.TritonError.INTERNAL and "signing broke" in error.message()


REID_PIPELINE_OUTPUTS = ("BOXES", "SCORES", "EMBEDDINGS", "TOKEN")  # the pipeline's step, ReID on


def test_with_reid_on_only_the_pipeline_step_gets_embeddings_signed_with_its_detections(gpu_detector_reid):
    # 1/model.onnx, the rendered settings
    assert StandInEmbedder.loaded == [("model.onnx", 96, True, True, False)]
    assert gpu_detector_reid.pipeline.embed is not None
    detect, pipeline = image_request(jpeg(), DETECT_OUTPUTS), image_request(jpeg(), REID_PIPELINE_OUTPUTS, camera=5)
    gpu_detector_reid.execute([detect, pipeline])
    assert [job.embed for job in gpu_detector_reid.pipeline.jobs] == [False, True]  # detect: no crops at all
    boxes, scores = np.array([[1, 2, 30, 40], [5, 5, 9, 9]], np.float32), np.array([0.9, 0.4], np.float32)
    embeddings = np.arange(6, dtype=np.float32).reshape(2, 3)
    detect_job, pipeline_job = gpu_detector_reid.pipeline.jobs
    detect_job.done((boxes, scores))
    pipeline_job.done((boxes, scores, embeddings))
    assert {t.name() for t in detect.answer().output_tensors} == set(DETECT_OUTPUTS)
    answer = pipeline.answer()
    assert {t.name() for t in answer.output_tensors} == set(REID_PIPELINE_OUTPUTS)
    np.testing.assert_array_equal(answer.output("EMBEDDINGS"), embeddings)
    token = answer.output("TOKEN")
    frame_tokens.verify(SECRET, token, frame_tokens.DETECTION_EMBEDDINGS, 5, boxes, scores, embeddings)
    with pytest.raises(InvalidInputError, match="token does not match"):  # not the detections alone, nor another camera
        frame_tokens.verify(SECRET, token, frame_tokens.DETECTIONS, 5, boxes, scores)
    with pytest.raises(InvalidInputError, match="token does not match"):
        frame_tokens.verify(SECRET, token, frame_tokens.DETECTION_EMBEDDINGS, 6, boxes, scores, embeddings)


def test_with_reid_on_a_failed_embedding_fails_that_request_only(gpu_detector_reid):
    first, second = (image_request(jpeg(), REID_PIPELINE_OUTPUTS, camera=c) for c in (1, 2))
    gpu_detector_reid.execute([first, second])
    one, two = gpu_detector_reid.pipeline.jobs
    one.done(RuntimeError("embedding broke"))
    two.done((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 3), np.float32)))
    assert "embedding broke" in first.answer().error.message()
    assert second.answer().output("EMBEDDINGS").shape == (0, 3)


def test_a_reid_model_of_another_size_than_the_embeddings_output_fails_the_load(monkeypatch, tmp_path):
    onnx = tmp_path / "osnet.onnx"
    onnx.write_bytes(b"")
    monkeypatch.setattr(StandInEmbedder, "dim", 512)
    load_gpu_detector(monkeypatch, tmp_path, reid_model=str(onnx))  # dims [-1, -1]: any D
    from pipeline_config import render as render_module

    monkeypatch.setitem(render_module.REID_OUTPUTS, "gpu_detector_reid_outputs", (
        '{ name: "EMBEDDINGS" data_type: TYPE_FP32 dims: [ -1, 256 ] }',
    ))
    with pytest.raises(Exception, match="EMBEDDINGS dims .* D=512"):
        load_gpu_detector(monkeypatch, tmp_path, reid_model=str(onnx))
