"""Every setting the models read from their ``config.pbtxt`` parameters, with its type and its only default.

One frozen dataclass per component; a field's name is the parameter's name and the ``configs/profiles.toml``
key. ``pipeline_config.render`` takes its defaults from here (``profiles.toml`` holds only what a profile,
family or tuning changes), the adapters read their parameters with :func:`from_parameters`, and the CLIs
take their defaults from the same fields. Stdlib only: the renderer imports it outside the stubs.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

Settings = TypeVar("Settings")


def _check_positive_ints(settings: object, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'{name}' must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ImageLimits:
    """Limits on one encoded frame, all checked from its headers before any pixel is decoded.

    A decode cannot be interrupted and its time grows with the area and, for a progressive JPEG, with the
    scans; higher limits admit larger frames at a higher worst-case cost per frame.

    Attributes:
        max_image_bytes: largest encoded size in bytes.
        max_image_side: largest width or height in pixels.
        max_image_pixels: largest width x height (8K UHD: a decode allocates 3 bytes a pixel).
        max_jpeg_scans: most start-of-scan segments in a JPEG; encoders write about 10, and each repeated
            refinement scan costs a pass over the whole image for a few bytes of input.
    """

    max_image_bytes: int = 20 * 1024 * 1024
    max_image_side: int = 8192
    max_image_pixels: int = 7680 * 4320
    max_jpeg_scans: int = 32

    def __post_init__(self) -> None:
        _check_positive_ints(self, *(f.name for f in fields(self)))


@dataclass(frozen=True)
class CameraSettings:
    """Per-camera lifetime shared by the tracker's state and the per-camera metrics.

    Attributes:
        idle_timeout_s: a camera silent this long loses its sequence, its tracker state and its metric
            label (shorter frees memory and places sooner; longer survives longer gaps in a stream).
        metrics_max_cameras: the first N live cameras get their own ``camera`` metric label, later ones
            share ``camera="other"`` (bounds the metrics' cardinality).
    """

    idle_timeout_s: float = 60.0
    metrics_max_cameras: int = 64

    def __post_init__(self) -> None:
        if not self.idle_timeout_s > 0:
            raise ValueError(f"'idle_timeout_s' must be positive, got {self.idle_timeout_s!r}")
        _check_positive_ints(self, "metrics_max_cameras")


@dataclass(frozen=True)
class InputSettings:
    """The detector's input: what preprocess makes of a decoded frame (letterbox or resize).

    Attributes:
        family: detector family, ``ssd`` or ``yolox`` (the profile's family; no default).
        input_h: model input height (derived by the renderer from ``images_dims``).
        input_w: model input width (derived likewise).
        legacy: yolox only: ByteTrack/old-YOLOX normalisation (ImageNet mean/std, what the ByteTrack
            weights were trained with) when true, current YOLOX (raw 0-255) when false.
    """

    family: str
    input_h: int
    input_w: int
    legacy: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"'family' {self.family!r} is not one of {list(FAMILIES)}")
        _check_positive_ints(self, "input_h", "input_w")

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.input_h, self.input_w)


@dataclass(frozen=True)
class OnnxDetectorSettings:
    """The detector model run by ONNX Runtime on CPU (deployment values: the profile states them).

    Attributes:
        family: the profile's detector family; the loaded ``model.onnx`` must be one.
        threads: ONNX Runtime intra-op threads per instance (profile key ``detector_threads``); more
            threads lower one frame's latency, more instances with fewer threads use the cores better.
    """

    family: str
    threads: int

    def __post_init__(self) -> None:
        _check_positive_ints(self, "threads")


@dataclass(frozen=True)
class DetectionLimit:
    """Detections per frame, read by whatever makes or receives them.

    Attributes:
        max_detections: detections per frame kept after NMS (the highest scores); the tracker refuses
            more. Lower bounds the tracker's quadratic match; higher keeps crowded frames whole.
    """

    max_detections: int = 300

    def __post_init__(self) -> None:
        _check_positive_ints(self, "max_detections")


@dataclass(frozen=True)
class Decode(DetectionLimit):
    """Decoding of the detector's raw output (yolox; :class:`SsdDecode` for ssd).

    Attributes:
        conf_thresh: minimum score kept. Low keeps the weak detections ByteTrack's second association
            uses to hold tracks through occlusion; high gives fewer boxes and less tracker work.
        nms_thresh: NMS IoU threshold (yolox only: the SSD graph runs its own NMS); lower merges more
            overlapping boxes, higher keeps people standing close together apart.
        person_class: the class id returned (COCO-trained YOLOX and the one-class ByteTrack YOLOX: 0).
    """

    conf_thresh: float = 0.1
    nms_thresh: float = 0.7
    person_class: int = 0


@dataclass(frozen=True)
class SsdDecode(Decode):
    """:class:`Decode` for the TF object-detection SSD, whose label map puts persons at 1."""

    person_class: int = 1


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack parameters (names as in the official tracker's arguments). These are every camera's; a
    camera's START may set its own (``tracking.start_settings``).

    Attributes:
        track_thresh: detections above it are "high" and take part in the first association;
            a new track starts only from a detection above ``track_thresh + 0.1``.
        track_buffer: frames (at 30 fps) a lost track is kept before removal; scaled by ``frame_rate``.
            Longer re-finds people after longer occlusions, at the risk of a wrong re-association.
        match_thresh: maximum IoU distance (1 - IoU) accepted in the first association.
        frame_rate: the camera's frame rate.
        mot20: when False the IoU distance is fused with detection scores (official default).
    """

    track_thresh: float = 0.5
    track_buffer: int = 30
    match_thresh: float = 0.8
    frame_rate: float = 30.0
    mot20: bool = False

    @property
    def det_thresh(self) -> float:
        return self.track_thresh + 0.1

    @property
    def max_time_lost(self) -> int:
        return int(self.frame_rate / 30.0 * self.track_buffer)


@dataclass(frozen=True)
class TrackerServing:
    """How one tracker instance serves its cameras.

    Attributes:
        max_cameras: cameras with tracker state per instance; a START for one more is refused at once
            (reason ``capacity``). Bounds the instance's memory and per-frame work.
        reorder_wait_s: how long a frame that carries ``frame_index`` and arrives ahead of a missing one
            waits for it before it is tracked without it. Longer tolerates more reordering; a frame
            refused upstream costs its successors this wait.
    """

    max_cameras: int = 64
    reorder_wait_s: float = 1.0

    def __post_init__(self) -> None:
        _check_positive_ints(self, "max_cameras")
        if not self.reorder_wait_s >= 0:
            raise ValueError(f"'reorder_wait_s' must be >= 0, got {self.reorder_wait_s!r}")


@dataclass(frozen=True)
class GpuDetectorSettings:
    """The fused GPU detector (nvJPEG, letterbox, YOLOX, decode and NMS on one GPU).

    Attributes:
        batch_buckets: CUDA graph batch sizes; a batch runs in the smallest that holds it (the rest is
            padding). The largest must hold ``max_batch_size``, so the profile states both (no default).
        yolox_arch: the YOLOX size (``yolox_tiny`` ... ``yolox_x``).
        num_classes: classes of the checkpoint's head.
        yolox_checkpoint: a Megvii/ByteTrack checkpoint; "" builds random weights (for speed only).
        cuda_graphs: replay each bucket as one CUDA graph (one launch a batch) instead of eager kernels.
        compile_detector: YOLOX through ``torch.compile`` (fewer passes over the activations); the first
            load compiles it, later loads read TorchInductor's disk cache; needs a C compiler.
        overlap_decode: decode and graph on two streams, overlapped; false runs them one after the other.
        nvjpeg_batch: images per nvJPEG call; small calls do not wait for the running graph, large ones do.
        launch_ahead_ms: under load the next batch is queued this long before the running one is expected
            to end, so the GPU does not idle between batches; frames decoded later wait for the next.
        pre_nms_topk: candidates per image entering NMS (1..2048); bounds the NMS cost.
        nms_iterations: Cluster-NMS steps inside the graph; a batch not settled by then finishes outside it
            (same result, more time).
    """

    batch_buckets: tuple[int, ...]
    yolox_arch: str = "yolox_x"
    num_classes: int = 1
    yolox_checkpoint: str = ""
    cuda_graphs: bool = True
    compile_detector: bool = True
    overlap_decode: bool = True
    nvjpeg_batch: int = 4
    launch_ahead_ms: float = 2.0
    pre_nms_topk: int = 1000
    nms_iterations: int = 6

    def __post_init__(self) -> None:
        if not self.batch_buckets or any(b < 1 for b in self.batch_buckets):
            raise ValueError(f"'batch_buckets' must be positive integers, got {self.batch_buckets!r}")
        _check_positive_ints(self, "num_classes", "nvjpeg_batch", "nms_iterations")
        if not 0 < self.pre_nms_topk <= 2048:
            raise ValueError(f"'pre_nms_topk' must be in 1..2048, got {self.pre_nms_topk}")


#: Most frames between two embeddings of a camera's tracks (``ReidSettings.reid_interval``): a second at
#: 30 frames/s; a track's look older than that is stale for the EMA and the identities.
MAX_REID_INTERVAL = 30


@dataclass(frozen=True)
class ReidSettings:
    """The ReID step: an OSNet-style ONNX run by ONNX Runtime on the CPU over every track's crop.

    Attributes:
        reid_model: the ONNX file (render time: ``--set reid_model=PATH`` turns ReID on and links it as
            ``reid/1/model.onnx``; "" = ReID off, the pipeline exactly as without it).
        reid_threads: ONNX Runtime intra-op threads per reid instance (0: one per core).
        reid_max_batch: most crops per ONNX Runtime call (a batch of cameras' crops runs in chunks of it);
            larger amortises the call, smaller bounds the activation memory.
        reid_interval: a camera's tracks (gpu profile: its detections) are embedded on one frame in this
            many (1: every frame), each camera at its own phase so the load stays even; the other frames'
            rows are NaN (no embedding), which the EMA and the identities skip: a track's look and global
            id are updated every ``reid_interval``-th frame (DeepStream's tracker calls it
            ``reidExtractionInterval``). At most :data:`MAX_REID_INTERVAL`; 1 with appearance association
            (it matches every frame's detections by appearance).
    """

    reid_model: str = ""
    reid_threads: int = 1
    reid_max_batch: int = 32
    reid_interval: int = 1

    def __post_init__(self) -> None:
        _check_positive_ints(self, "reid_max_batch")
        interval = self.reid_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= MAX_REID_INTERVAL:
            raise ValueError(f"'reid_interval' must be an integer in 1..{MAX_REID_INTERVAL}, got {interval!r}")
        threads = self.reid_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"'reid_threads' must be an integer >= 0, got {self.reid_threads!r}")


@dataclass(frozen=True)
class GpuReidSettings:
    """The gpu profile's ReID (``pipeline_models.gpu.reid``), besides :class:`ReidSettings`. Both apply to a
    torchreid OSNet, which runs as our own definition; another ONNX runs converted, in FP32, eagerly.

    Attributes:
        reid_fp16: half precision (channels-last): about twice the crops a second at large batches, the
            embeddings within ~2e-4 of FP32 in cosine (docs/benchmarks.md).
        reid_compile: through ``torch.compile`` (TorchInductor), like ``compile_detector``: fewer passes
            over the activations, at a compile on the first load; needs a C compiler.
        reid_crop_kernel: crops cut by a Triton kernel inside the model's CUDA graphs (our OSNet), which
            frees the host from some forty PyTorch calls a batch; false (or Triton failing at load, which
            the log says) cuts them with ``grid_sample`` before the graphs, the same pixels within 2e-3
            (normalised; docs/benchmarks.md).
        reid_ahead: a batch's embeddings queued on the GPU right behind its detector graph, from its boxes
            still there, for a guessed number of crops (``pipeline_models.gpu.reid_ahead``); false queues
            them once the boxes are on the host, on a stream of their own beside the next batch's graph.
            Needs ``reid_crop_kernel``; a batch whose crops outnumber the guess is embedded the false way.
    """

    reid_fp16: bool = True
    reid_compile: bool = True
    reid_crop_kernel: bool = True
    reid_ahead: bool = False


@dataclass(frozen=True)
class TrackSmoothing:
    """A track's smoothed (EMA) appearance: which detections update it and how fast. One definition for
    the identities step and, with appearance association on, the tracker (each reads the same values).

    Attributes:
        ema_momentum: EMA weight of the past in a track's and an identity's smoothed embedding (higher is
            steadier, slower to follow a change of view).
        min_score: a detection updates its track's embedding only with at least this score.
        max_overlap: ... and only when it overlaps no other box of the frame by more IoU than this (a crop
            showing two people would smear both).
    """

    ema_momentum: float = 0.9
    min_score: float = 0.5
    max_overlap: float = 0.5

    def __post_init__(self) -> None:
        for name in ("ema_momentum", "max_overlap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"'{name}' must be in [0, 1], got {getattr(self, name)!r}")


@dataclass(frozen=True)
class AppearanceAssociation(TrackSmoothing):
    """Appearance-aided association inside the tracker (BoT-SORT's first association), off by default.

    Render time: ``--set appearance_association=true`` (needs ``reid_model``) embeds every detection before
    the tracker; off, the tracker is plain ByteTrack and its config carries none of these parameters. A
    camera's START may set ``appearance_association``, ``proximity_thresh`` and ``appearance_thresh`` for
    itself (``tracking.start_settings``).

    Attributes:
        appearance_association: fuse IoU with appearance when matching tracks to confident detections
            (and unconfirmed tracks to the rest), so that a person re-found after an occlusion or a
            crossing keeps their id.
        proximity_thresh: appearance counts only for pairs whose IoU distance (1 - IoU) is at most this
            (higher lets appearance bridge larger jumps, and confuse more far-apart look-alikes).
        appearance_thresh: appearance counts only for pairs whose distance ``(1 - cos) / 2`` is at most
            this (higher trusts weaker resemblance).
        refind_thresh: a lost track that no box overlaps is re-found by appearance alone, inside its
            Kalman gate, by a detection that would otherwise start a new track, when their distance is at
            most this; stricter than ``appearance_thresh`` since nothing else vouches for the pair (with
            OSNet x0.25 two different walkers are 0.18 to 0.25 apart). 0 turns this re-find off.
    """

    appearance_association: bool = False
    proximity_thresh: float = 0.5
    appearance_thresh: float = 0.25
    refind_thresh: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.appearance_association, bool):  # ValueError, as every check here: callers catch it
            raise ValueError(  # noqa: TRY004
                f"'appearance_association' must be true or false, got {self.appearance_association!r}"
            )
        for name in ("proximity_thresh", "appearance_thresh", "refind_thresh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"'{name}' must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class IdentitySettings(TrackSmoothing):
    """Global identities across the cameras of a server (``pipeline_models.reid.identities``).

    Attributes:
        similarity_thresh: least cosine similarity for a track to join a known identity; lower joins more
            tracks across views (and merges more look-alikes), higher gives more new ids.
        max_age_s: identities and track bindings not seen for this long expire (longer re-finds people
            after longer absences, with a larger gallery to confuse).
        revision_frames: a track's global id may change during its first frames, up to this many; then it
            stays.
        ema_momentum:, min_score:, max_overlap: a track's smoothed embedding (defined, with the
            identities' EMA weight, in :class:`TrackSmoothing`).
        name_thresh: least cosine similarity between a track's smoothed embedding and an enrolled
            person's best embedding for the track to carry their name (one-to-one per frame): lower names
            more tracks (in poorer views, and more strangers named after a look-alike), higher names fewer
            but more surely; keep it above ``similarity_thresh`` (a name is a stronger claim than an id).
        names_refresh_s: the enrolled people are read from the store at most this often (an enrolment
            made by another process or server shows up within this time; lower reads the store more).
        sighting_interval_s: a track's sighting (camera, time, global id, embedding) is appended at most
            once per this many seconds (what search finds; lower records more, in a bigger table).
        sighting_retention_s: sightings older than this are deleted (search looks back this far).
        database_url: the durable store of identities, enrolled people and sightings
            (``pipeline_models.reid.store.open_store``): "" = identities in memory only (gone at exit,
            nobody enrolled, every name "", no sightings); ``sqlite:///path`` (a file, created when
            missing) or ``postgresql://...`` (several servers sharing one gallery).
    """

    similarity_thresh: float = 0.7
    max_age_s: float = 60.0
    revision_frames: int = 10
    name_thresh: float = 0.75
    names_refresh_s: float = 2.0
    sighting_interval_s: float = 1.0
    sighting_retention_s: float = 7 * 24 * 3600.0
    database_url: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_ints(self, "revision_frames")
        for name in ("similarity_thresh", "name_thresh"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"'{name}' must be in [-1, 1], got {getattr(self, name)!r}")
        for name in ("max_age_s", "sighting_retention_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"'{name}' must be positive, got {getattr(self, name)!r}")
        for name in ("names_refresh_s", "sighting_interval_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)!r}")


FAMILIES = ("ssd", "yolox")
#: The decode settings of each detector family.
DECODE: dict[str, type[Decode]] = {"ssd": SsdDecode, "yolox": Decode}
#: Every definition whose defaults the renderer supplies (the family's decode besides).
SHARED = (
    ImageLimits, CameraSettings, InputSettings, TrackerConfig, TrackerServing, GpuDetectorSettings, ReidSettings,
    GpuReidSettings, IdentitySettings, AppearanceAssociation,
)


def parse_bool(text: str) -> bool:
    """``true``/``false`` (any case, or 1/0, yes/no) as a bool."""
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


_SCALARS: dict[type, tuple[Any, str]] = {
    bool: (parse_bool, "true or false"),
    int: (int, "an integer"),
    float: (float, "a number"),
    str: (str, "a string"),
}


def parse_value(text: str, kind: Any) -> Any:
    """``text`` as ``kind``: bool, int, float, str, ``tuple[T, ...]``, ``tuple[T, U]`` or ``list[T]`` (items
    comma-separated).

    Raises:
        ValueError: the text is not of that type, saying what was expected.
    """
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        args = typing.get_args(kind)
        items = [item.strip() for item in str(text).split(",")]
        if "" in items:
            raise ValueError(f"expected comma-separated items, got {text!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated items, got {text!r}")
            return tuple(parse_value(item, arg) for item, arg in zip(items, args))
        parsed = [parse_value(item, args[0]) for item in items]
        return tuple(parsed) if origin is tuple else parsed
    if kind not in _SCALARS:
        raise TypeError(f"no parser for {kind!r}")
    cast, what = _SCALARS[kind]
    try:
        return cast(text)
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> its annotation, resolved (the module uses ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def from_parameters(cls: type[Settings], parameters: Mapping[str, str]) -> Settings:
    """A settings object from a model's string parameters; every field's parameter is required (the
    rendered config carries every value, so a missing one is a stale or hand-made config).

    Raises:
        ValueError: a parameter is missing, not of its field's type, or refused by the dataclass; the
            message names the parameter.
    """
    values = {}
    for name, kind in field_types(cls).items():  # type: ignore[arg-type]
        if name not in parameters:
            raise ValueError(f"parameter '{name}' is missing")
        try:
            values[name] = parse_value(parameters[name], kind)
        except ValueError as exc:
            raise ValueError(f"parameter '{name}'={parameters[name]!r} is invalid: {exc}") from None
    try:
        return cls(**values)
    except ValueError as exc:
        raise ValueError(f"parameter {exc}") from None


def defaults(cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that have a default, with it."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def definitions(family: str) -> tuple[type, ...]:
    """The definitions a profile of ``family`` renders: :data:`SHARED` and the family's decode."""
    if family not in DECODE:
        raise ValueError(f"family {family!r} is not one of {list(FAMILIES)}")
    return (*SHARED, DECODE[family])


def family_defaults(family: str) -> dict[str, Any]:
    """Every default a profile of ``family`` starts from (key -> value).

    Raises:
        ValueError: two definitions give one key different defaults (a key has one default).
    """
    out: dict[str, Any] = {}
    for cls in definitions(family):
        for key, value in defaults(cls).items():
            if key in out and out[key] != value:
                raise ValueError(f"{key} has two defaults: {out[key]!r} and {value!r} ({cls.__name__})")
            out[key] = value
    return out
