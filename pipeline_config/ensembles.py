"""The ensembles ``pipeline`` and ``detect``, composed from steps that are each defined once.

A step is one model with its ``input_map``/``output_map``. Detection takes one of two forms, chosen by
the models a profile has: *staged* (preprocess -> detector -> postprocess) or *fused* (gpu_detector).
``detect`` is the detection alone, its boxes and scores renamed to the public outputs; ``pipeline`` is
the detection followed by the tracker, and with ReID on (``REID_ENSEMBLES``) by ``reid`` and ``identities``
too (a step's outputs that nothing reads, such as preprocess's ``FRAME`` without ReID, are left out); with
appearance association on too (``APPEARANCE_ENSEMBLES``) reid runs before the tracker, over the detections.
A detection form may embed its detections itself (``EMBEDDING_DETECTIONS``: gpu_detector, in its own CUDA
context): with ReID on it then has no reid step, and the tracker takes the embeddings as with appearance
association. Public tensors are the ensembles' inputs and outputs; the intermediate ones start with ``_``,
as in tensorrtllm_backend's ensembles. ``render_ensemble`` writes
the ``config.pbtxt`` text (``pipeline_config.render`` adds the generated-file header).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

# Public tensors (what a client sends and receives).
IMAGE = "IMAGE"
BOXES = "BOXES"
SCORES = "SCORES"
TRACK_IDS = "TRACK_IDS"
GLOBAL_IDS = "GLOBAL_IDS"
NAMES = "NAMES"
# Intermediate tensors. The TOKEN tensors carry the signed frame token (``pipeline_models.frame_tokens``)
# from preprocess to postprocess and from detection to the tracker.
_IMAGES = "_IMAGES"
_META = "_META"
_PRE_TOKEN = "_PRE_TOKEN"
_RAW = "_RAW"
_DET_BOXES = "_DET_BOXES"
_DET_SCORES = "_DET_SCORES"
_DET_TOKEN = "_DET_TOKEN"
# ReID on only: the decoded frame, the tracks' token, their embeddings and the embeddings' token.
_FRAME = "_FRAME"
_TRK_TOKEN = "_TRK_TOKEN"
_TRACK_EMB = "_TRACK_EMB"
_EMB_TOKEN = "_EMB_TOKEN"
# Appearance association on: every detection's embedding and reid's token over the detections and them.
_DET_EMB = "_DET_EMB"
_DET_EMB_TOKEN = "_DET_EMB_TOKEN"


@dataclass(frozen=True)
class Tensor:
    """An ensemble input or output (dims without the batch dim)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """One model of an ensemble.

    Attributes:
        model: model name.
        inputs: model input -> ensemble tensor it reads.
        outputs: model output -> ensemble tensor it writes.
    """

    model: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


PREPROCESS = Step(
    "preprocess",
    {"IMAGE": IMAGE},
    {"IMAGES": _IMAGES, "META": _META, "TOKEN": _PRE_TOKEN, "FRAME": _FRAME},
)
DETECTOR = Step("detector", {"images": _IMAGES}, {"output": _RAW})
POSTPROCESS = Step(
    "postprocess",
    {"RAW": _RAW, "META": _META, "TOKEN": _PRE_TOKEN},
    {"BOXES": _DET_BOXES, "SCORES": _DET_SCORES, "TOKEN": _DET_TOKEN},
)
GPU_DETECTOR = Step(
    "gpu_detector",
    {"IMAGE": IMAGE},
    {"BOXES": _DET_BOXES, "SCORES": _DET_SCORES, "TOKEN": _DET_TOKEN, "FRAME": _FRAME},
)
TRACKER = Step(
    "tracker",
    {"DET_BOXES": _DET_BOXES, "DET_SCORES": _DET_SCORES, "TOKEN": _DET_TOKEN},
    {"TRACK_IDS": TRACK_IDS, "TRACK_BOXES": BOXES, "TRACK_SCORES": SCORES, "TOKEN": _TRK_TOKEN},
)
_TRACKS = {"TRACK_IDS": TRACK_IDS, "TRACK_BOXES": BOXES, "TRACK_SCORES": SCORES}
REID = Step(
    "reid", {"FRAME": _FRAME, **_TRACKS, "TOKEN": _TRK_TOKEN}, {"EMBEDDINGS": _TRACK_EMB, "TOKEN": _EMB_TOKEN}
)
IDENTITIES = Step(
    "identities",
    {**_TRACKS, "EMBEDDINGS": _TRACK_EMB, "TOKEN": _EMB_TOKEN},
    {"GLOBAL_IDS": GLOBAL_IDS, "NAMES": NAMES},
)
#: Appearance association on (``APPEARANCE_ENSEMBLES``): reid embeds every detection, the tracker matches
#: with the embeddings and hands each track's on to identities (signed for it).
REID_DETECTIONS = Step(
    "reid",
    {"FRAME": _FRAME, "DET_BOXES": _DET_BOXES, "DET_SCORES": _DET_SCORES, "TOKEN": _DET_TOKEN},
    {"EMBEDDINGS": _DET_EMB, "TOKEN": _DET_EMB_TOKEN},
)
TRACKER_APPEARANCE = Step(
    "tracker",
    {"DET_BOXES": _DET_BOXES, "DET_SCORES": _DET_SCORES, "DET_EMBEDDINGS": _DET_EMB, "TOKEN": _DET_EMB_TOKEN},
    {**{k: v for k, v in TRACKER.outputs.items() if k != "TOKEN"}, "EMBEDDINGS": _TRACK_EMB, "TOKEN": _EMB_TOKEN},
)
#: The python model of enrolment and search by photo (``people``; not an ensemble step).
PEOPLE = "people"
#: The models ReID adds to a repository.
REID_MODELS = (REID.model, IDENTITIES.model, PEOPLE)

#: The forms of detection: image in, ``_DET_BOXES``/``_DET_SCORES``/``_DET_TOKEN`` out.
DETECTIONS: Mapping[str, tuple[Step, ...]] = {
    "staged": (PREPROCESS, DETECTOR, POSTPROCESS),
    "fused": (GPU_DETECTOR,),
}
#: ReID on: gpu_detector embeds every detection from the frame it decoded (no frame leaves its process)
#: and signs the detections and their embeddings for the tracker, as reid does before it.
GPU_DETECTOR_EMBEDDING = Step(
    "gpu_detector",
    {"IMAGE": IMAGE},
    {"BOXES": _DET_BOXES, "SCORES": _DET_SCORES, "EMBEDDINGS": _DET_EMB, "TOKEN": _DET_EMB_TOKEN},
)
#: ReID on: the detection forms that embed their detections themselves (image in, ``_DET_BOXES``,
#: ``_DET_SCORES``, ``_DET_EMB`` and ``_DET_EMB_TOKEN`` out).
EMBEDDING_DETECTIONS: Mapping[str, tuple[Step, ...]] = {"fused": (GPU_DETECTOR_EMBEDDING,)}


@dataclass(frozen=True)
class Ensemble:
    """One ensemble: its public tensors and what follows the detection.

    Attributes:
        name: model name.
        comment: the lines of the ``#`` comment above the config (how to call it).
        inputs: public inputs.
        outputs: public outputs.
        after_detection: the steps after the detection steps.
        exposed: intermediate tensor -> the public output it becomes.
    """

    name: str
    comment: tuple[str, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    after_detection: tuple[Step, ...] = ()
    exposed: Mapping[str, str] = field(default_factory=dict)


_IMAGE_INPUT = (Tensor(IMAGE, "TYPE_STRING", (1,)),)
_BOXES_OUTPUT = Tensor(BOXES, "TYPE_FP32", (-1, 4))
_SCORES_OUTPUT = Tensor(SCORES, "TYPE_FP32", (-1,))
_TRACK_OUTPUTS = (Tensor(TRACK_IDS, "TYPE_INT64", (-1,)), _BOXES_OUTPUT, _SCORES_OUTPUT)
_PIPELINE_COMMENT = (
    "Stateful: send sequence_id = camera id (an integer or a string), sequence_start on its first",
    "frame, sequence_end on its last, and either one frame in flight per camera or the request",
    "parameter frame_index (increasing per camera; Triton forwards it to the tracker, which",
    "refuses a frame that arrives after a later one with reason out_of_order).",
)

ENSEMBLES: Mapping[str, Ensemble] = {
    "pipeline": Ensemble(
        name="pipeline",
        comment=_PIPELINE_COMMENT,
        inputs=_IMAGE_INPUT,
        outputs=_TRACK_OUTPUTS,
        after_detection=(TRACKER,),
    ),
    "detect": Ensemble(
        name="detect",
        comment=("Stateless detection: one encoded image in, its boxes and scores out.",),
        inputs=_IMAGE_INPUT,
        outputs=(_BOXES_OUTPUT, _SCORES_OUTPUT),
        exposed={_DET_BOXES: BOXES, _DET_SCORES: SCORES},
    ),
}

#: The ensembles that ReID (``--set reid_model=PATH``) changes: ``pipeline`` also returns each track's
#: global id and name, aligned with ``TRACK_IDS``. ``detect`` stays as it is.
REID_ENSEMBLES: Mapping[str, Ensemble] = {
    "pipeline": Ensemble(
        name="pipeline",
        comment=(
            *_PIPELINE_COMMENT,
            "ReID on: GLOBAL_IDS (one id per person across the server's cameras) and NAMES (an enrolled",
            "person's name, or \"\") are aligned with TRACK_IDS.",
        ),
        inputs=_IMAGE_INPUT,
        outputs=(
            *_TRACK_OUTPUTS, Tensor(GLOBAL_IDS, "TYPE_INT64", (-1,)), Tensor(NAMES, "TYPE_STRING", (-1,))
        ),
        after_detection=(TRACKER, REID, IDENTITIES),
    ),
}


#: ReID with appearance association (``--set appearance_association=true``): the same public tensors as
#: ``REID_ENSEMBLES``, reid moved before the tracker.
APPEARANCE_ENSEMBLES: Mapping[str, Ensemble] = {
    "pipeline": Ensemble(
        name="pipeline",
        comment=(
            *REID_ENSEMBLES["pipeline"].comment,
            "Appearance association on: the tracker matches detections by IoU and appearance (BoT-SORT).",
        ),
        inputs=_IMAGE_INPUT,
        outputs=REID_ENSEMBLES["pipeline"].outputs,
        after_detection=(REID_DETECTIONS, TRACKER_APPEARANCE, IDENTITIES),
    ),
}


def ensemble(name: str, reid: bool = False, appearance: bool = False, embedded: bool = False) -> Ensemble:
    """The ensemble ``name``, in its ReID form when ``reid`` (and it has one), with reid before the tracker
    when ``appearance`` too, and with no reid step when the detection embeds (``embedded``; the tracker
    then takes the detection's embeddings, whether or not it matches by them).

    Raises:
        ValueError: ``appearance`` without ``reid``.
    """
    if appearance and not reid:
        raise ValueError("appearance association needs ReID (reid_model)")
    forms = APPEARANCE_ENSEMBLES if appearance else REID_ENSEMBLES if reid else {}
    chosen = forms.get(name, ENSEMBLES[name])
    if reid and embedded and name in APPEARANCE_ENSEMBLES:
        steps = APPEARANCE_ENSEMBLES[name].after_detection
        chosen = replace(chosen, after_detection=tuple(s for s in steps if s is not REID_DETECTIONS))
    return chosen


def detection_steps(form: str, reid: bool = False) -> tuple[Step, ...]:
    """The steps of detection ``form``: with ReID on, its embedding steps where it embeds itself."""
    return EMBEDDING_DETECTIONS.get(form, DETECTIONS[form]) if reid else DETECTIONS[form]


def detection_form(models: Collection[str]) -> str:
    """The detection form whose models are all among ``models``.

    Raises:
        ValueError: none or more than one form fits.
    """
    fits = [form for form, steps in DETECTIONS.items() if all(s.model in models for s in steps)]
    if len(fits) != 1:
        forms = "; ".join(f"{k}: {', '.join(s.model for s in steps)}" for k, steps in DETECTIONS.items())
        raise ValueError(
            f"an ensemble needs the models of exactly one detection form ({forms}); "
            f"found {'both' if fits else 'neither'}"
        )
    return fits[0]


def compose(ensemble: Ensemble, detection: Sequence[Step]) -> list[Step]:
    """The steps of ``ensemble`` after ``detection``, exposed tensors renamed, unused outputs left out.

    An output no later step reads and the ensemble does not return is not mapped (``detect`` drops the
    detection's token).

    Raises:
        ValueError: a step reads a tensor nothing produced before it, or an output is never produced.
    """

    def public(tensor: str) -> str:
        return ensemble.exposed.get(tensor, tensor)

    steps = [
        Step(step.model, _renamed(step.inputs, public), _renamed(step.outputs, public))
        for step in (*detection, *ensemble.after_detection)
    ]
    returned = {t.name for t in ensemble.outputs}
    available = {t.name for t in ensemble.inputs}
    composed: list[Step] = []
    for index, step in enumerate(steps):
        missing = sorted(set(step.inputs.values()) - available)
        if missing:
            raise ValueError(
                f"{ensemble.name}: {step.model} reads {', '.join(missing)}, which nothing produced"
            )
        read_later = {tensor for later in steps[index + 1 :] for tensor in later.inputs.values()}
        outputs = {k: v for k, v in step.outputs.items() if v in read_later or v in returned}
        available |= set(outputs.values())
        composed.append(Step(step.model, step.inputs, outputs))
    never = sorted(returned - available)
    if never:
        raise ValueError(f"{ensemble.name}: outputs {', '.join(never)} are never produced")
    return composed


def _renamed(tensors: Mapping[str, str], rename: Callable[[str], str]) -> dict[str, str]:
    return {key: rename(tensor) for key, tensor in tensors.items()}


def _tensors(kind: str, tensors: Sequence[Tensor]) -> list[str]:
    rows = [
        f'  {{ name: "{t.name}" data_type: {t.data_type} dims: [ {", ".join(str(d) for d in t.dims)} ] }}'
        for t in tensors
    ]
    return [f"{kind} [", ",\n".join(rows), "]"]


def render_ensemble(ensemble: Ensemble, steps: Sequence[Step], max_batch_size: int) -> str:
    """The ``config.pbtxt`` text of ``ensemble`` running ``steps`` (from ``compose``)."""
    lines = [f"# {line}" for line in ensemble.comment]
    lines += [f'name: "{ensemble.name}"', 'platform: "ensemble"', f"max_batch_size: {max_batch_size}"]
    lines += _tensors("input", ensemble.inputs) + _tensors("output", ensemble.outputs)
    blocks = []
    for step in steps:
        block = ["    {", f'      model_name: "{step.model}"', "      model_version: -1"]
        block += [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in step.inputs.items()]
        block += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in step.outputs.items()]
        blocks.append("\n".join([*block, "    }"]))
    lines += ["ensemble_scheduling {", "  step [", ",\n".join(blocks), "  ]", "}"]
    return "\n".join(lines) + "\n"
