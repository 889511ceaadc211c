"""One camera's tracks as JSON Lines: every field of every frame, one line per frame (issue 19's format).

Each line is ``{"frame": 1-based, "ts": seconds, "tracks": [{"id": ..., "box": [x1, y1, x2, y2],
"score": ..., "global_id": ..., "name": ...}]}``; ``global_id`` and ``name`` are null when the server has
no ReID, ``name`` is ``""`` for a track that matches no enrolled person; a frame without tracks (or one
that failed) has ``"tracks": []``. Lines are written whole and flushed one by one, so a killed client
leaves only whole lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline_models.types import Tracks

DECIMALS = 4  # as the MOT text's boxes


def _number(value: float) -> float | None:
    """A finite float rounded to ``DECIMALS``; None (JSON null) for NaN or infinity."""
    value = float(value)
    return round(value, DECIMALS) if math.isfinite(value) else None


def frame_record(
    index: int,
    ts: float,
    tracks: Tracks,
    global_ids: npt.NDArray[np.integer] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One frame's line as a dict.

    Args:
        index: 0-based frame index (written 1-based, as the MOT frame number).
        ts: the frame's time in seconds.
        tracks: the frame's tracks.
        global_ids: ``(n,)`` aligned with ``tracks``, None without ReID.
        names: ``n`` names aligned with ``tracks``, None without ReID.

    Raises:
        ValueError: ``global_ids`` or ``names`` not aligned with ``tracks``.
    """
    n = len(tracks)
    gids = [None] * n if global_ids is None else [int(g) for g in np.asarray(global_ids).reshape(-1)]
    labels: list[str | None] = [None] * n if names is None else [str(name) for name in names]
    if len(gids) != n or len(labels) != n:
        raise ValueError(f"{n} tracks but {len(gids)} global ids and {len(labels)} names")
    rows = [
        {
            "id": int(track_id),
            "box": [_number(v) for v in box],
            "score": _number(score),
            "global_id": gid,
            "name": name,
        }
        for track_id, box, score, gid, name in zip(
            tracks.ids.tolist(), tracks.xyxy.tolist(), tracks.scores.tolist(), gids, labels
        )
    ]
    return {"frame": int(index) + 1, "ts": _number(ts), "tracks": rows}


def frame_line(record: dict[str, Any]) -> str:
    """A record as one JSON line (newline included; names in UTF-8, not escaped)."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


class JsonlSink:
    """A JSON Lines file written one whole, flushed line per frame."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append one frame's line and flush it."""
        self._fh.write(frame_line(record))
        self._fh.flush()

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        self._fh.close()
