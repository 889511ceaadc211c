"""Model parameters (strings, as in ``config.pbtxt`` and ``configs/profiles.toml``) to typed objects.

The Triton adapters and the in-process pipeline build their codec and tracker config from the same
parameters through these functions, so both run exactly the same settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline_models.image_checks import ImageLimits
from pipeline_models.types import TrackerConfig

if TYPE_CHECKING:  # detectors imports OpenCV and ONNX Runtime, which the gpu adapters do without
    from pipeline_models.detectors import Codec


def parse_bool(text: str) -> bool:
    """``true``/``false`` (any case, or 1/0, yes/no) as a bool."""
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def required(parameters: Mapping[str, str], key: str, cast: Callable[[str], Any] = str) -> Any:
    """``cast(parameters[key])``.

    Raises:
        ValueError: the parameter is missing or does not convert, with its name in the message.
    """
    if key not in parameters:
        raise ValueError(f"parameter '{key}' is missing")
    try:
        return cast(parameters[key])
    except ValueError as exc:
        raise ValueError(f"parameter '{key}'={parameters[key]!r} is invalid: {exc}") from exc


#: Codec fields each detector family reads from parameters, with their types.
CODEC_PARAMETERS: dict[str, dict[str, Callable[[str], Any]]] = {
    "ssd": {"conf_thresh": float, "person_class": int, "max_detections": positive_int},
    "yolox": {
        "conf_thresh": float,
        "max_detections": positive_int,
        "nms_thresh": float,
        "person_class": int,
        "legacy": parse_bool,
        "input_h": int,
        "input_w": int,
    },
}

TRACKER_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "track_thresh": float,
    "track_buffer": int,
    "match_thresh": float,
    "frame_rate": float,
    "mot20": parse_bool,
}


#: ``ImageLimits`` field -> model parameter.
IMAGE_LIMIT_PARAMETERS = {
    "max_bytes": "max_image_bytes",
    "max_side": "max_image_side",
    "max_pixels": "max_image_pixels",
    "max_jpeg_scans": "max_jpeg_scans",
}


def image_limits_from_parameters(parameters: Mapping[str, str]) -> ImageLimits:
    """The limits on one encoded frame (all required, positive integers).

    Raises:
        ValueError: a parameter is missing, not an integer or not positive, named in the message.
    """
    return ImageLimits(
        **{field: required(parameters, key, positive_int) for field, key in IMAGE_LIMIT_PARAMETERS.items()}
    )


def codec_from_parameters(parameters: Mapping[str, str]) -> Codec:
    """The detector codec described by ``family`` and that family's codec parameters (all required)."""
    from pipeline_models.detectors import make_codec

    family = required(parameters, "family")
    if family not in CODEC_PARAMETERS:
        raise ValueError(f"parameter 'family'={family!r} is not one of {sorted(CODEC_PARAMETERS)}")
    options = {key: required(parameters, key, cast) for key, cast in CODEC_PARAMETERS[family].items()}
    if family == "yolox":
        options["input_hw"] = (options.pop("input_h"), options.pop("input_w"))
    return make_codec(family, **options)


def tracker_config_from_parameters(parameters: Mapping[str, str]) -> TrackerConfig:
    """The ByteTrack configuration from its parameters (all required)."""
    return TrackerConfig(**{key: required(parameters, key, cast) for key, cast in TRACKER_PARAMETERS.items()})
