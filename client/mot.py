"""MOTChallenge track lines (``frame,id,x,y,w,h,score,-1,-1,-1``)."""

from __future__ import annotations

from pipeline_models.types import Tracks


def mot_lines(frame: int, tracks: Tracks) -> list[str]:
    """MOTChallenge lines of one frame (``frame`` counts from 1; box with 4 decimals, score with 5)."""
    return [
        f"{frame},{int(i)},{x:.4f},{y:.4f},{w:.4f},{h:.4f},{s:.5f},-1,-1,-1"
        for i, (x, y, w, h), s in zip(tracks.ids.tolist(), tracks.tlwh.tolist(), tracks.scores.tolist())
    ]
