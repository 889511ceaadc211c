"""A camera's own tracker settings, read from the request parameters of its START.

A START may carry request parameters named like the per-camera :class:`TrackerConfig` fields
(:data:`PER_CAMERA`); each one given replaces the model's configured value for that camera's tracker, the
others keep it. Other parameter names (``frame_index``, anything unknown) are not looked at. Values come
as Triton gives them (JSON bool, int, float or string); a string is parsed as the field's type, as
``settings.from_parameters`` does for ``config.pbtxt``. Pure: no Triton, no state.

Likewise the :class:`AppearanceAssociation` fields of :data:`APPEARANCE_PER_CAMERA`
(:func:`camera_appearance`): a camera may turn appearance association off, or on where the server's tracker
gets detection embeddings (rendered with ``appearance_association=true``), and set its thresholds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from pipeline_models.errors import InvalidInputError
from pipeline_models.settings import AppearanceAssociation, TrackerConfig, field_types, parse_value

#: Largest accepted ``frame_rate`` (frames per second).
MAX_FRAME_RATE = 1000.0
#: Largest accepted ``track_buffer`` (frames at 30 fps; 10 000 is over 5 minutes).
MAX_TRACK_BUFFER = 10_000

#: The TrackerConfig fields a START may set, with the check of a value (a bound description).
PER_CAMERA: dict[str, tuple[Any, str]] = {
    "frame_rate": (lambda v: 0 < v <= MAX_FRAME_RATE, f"a number in (0, {MAX_FRAME_RATE:g}]"),
    "track_buffer": (lambda v: 1 <= v <= MAX_TRACK_BUFFER, f"an integer in [1, {MAX_TRACK_BUFFER}]"),
    "track_thresh": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "match_thresh": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "mot20": (lambda v: True, "true or false"),
}

#: The AppearanceAssociation fields a START may set, checked likewise.
APPEARANCE_PER_CAMERA: dict[str, tuple[Any, str]] = {
    "appearance_association": (lambda v: True, "true or false"),
    "proximity_thresh": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "appearance_thresh": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "refind_thresh": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}

_TYPES = {
    **{name: kind for name, kind in field_types(TrackerConfig).items() if name in PER_CAMERA},
    **{name: kind for name, kind in field_types(AppearanceAssociation).items() if name in APPEARANCE_PER_CAMERA},
}
_CHECKS = {**PER_CAMERA, **APPEARANCE_PER_CAMERA}


def camera_tracker_config(base: TrackerConfig, parameters: Mapping[str, Any]) -> TrackerConfig:
    """``base`` with the per-camera fields that ``parameters`` (a START's request parameters) carry.

    Raises:
        InvalidInputError: (bad_request) a value of the wrong type or out of range, naming the parameter.
    """
    changes = {name: _value(name, parameters[name]) for name in PER_CAMERA if name in parameters}
    return dataclasses.replace(base, **changes) if changes else base


def camera_appearance(
    base: AppearanceAssociation | None, parameters: Mapping[str, Any]
) -> AppearanceAssociation | None:
    """``base`` with the appearance fields that ``parameters`` (a START's request parameters) carry.

    Args:
        base: the server's settings, or None when its tracker gets no detection embeddings.

    Raises:
        InvalidInputError: (bad_request) a value of the wrong type or out of range, or
            ``appearance_association`` true where ``base`` is None (naming the render option).
    """
    changes = {name: _value(name, parameters[name]) for name in APPEARANCE_PER_CAMERA if name in parameters}
    if base is None:
        if changes.get("appearance_association"):
            raise InvalidInputError(
                "START parameter appearance_association=true needs detection embeddings, which this server's "
                "tracker does not get: render it with --set reid_model=PATH --set appearance_association=true"
            )
        return None
    return dataclasses.replace(base, **changes) if changes else base


def _value(name: str, raw: Any) -> Any:
    kind = _TYPES[name]
    check, what = _CHECKS[name]
    value = _typed(raw, kind)
    if value is None or not check(value):
        raise InvalidInputError(f"START parameter {name} must be {what}, got {raw!r:.40}")
    return value


def _typed(raw: Any, kind: type) -> Any:
    """``raw`` as ``kind`` (bool, int or float), or None when it is not one (bools are no numbers)."""
    if isinstance(raw, str):
        try:
            raw = parse_value(raw, kind)
        except ValueError:
            return None
    if kind is bool:
        return raw if isinstance(raw, bool) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    if kind is int:
        return raw if isinstance(raw, int) else None
    try:
        value = float(raw)
    except OverflowError:  # an integer too large for a float
        return None
    return value if math.isfinite(value) else None
