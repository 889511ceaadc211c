"""Drawing tracks on frames (pure functions) and writing the annotated video (I/O, kept apart)."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Point = tuple[int, int]
Trails = dict[int, tuple[Point, ...]]

_GOLDEN_RATIO = 0.618033988749895
VIDEO_TIME_BASE = 1000  # video timestamps in milliseconds: live frames keep their real spacing
MAX_NAME_CHARS = 24  # a longer name is cut (``...``) so that the label stays near its box


def id_color(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour for a track ID; consecutive IDs get well-separated hues."""
    hue = (int(track_id) * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def bottom_centres(xyxy: npt.NDArray[np.floating]) -> npt.NDArray[np.int32]:
    """``(n, 2)`` integer bottom-centre points ``((x1 + x2) / 2, y2)`` of ``(n, 4)`` xyxy boxes."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    points = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, boxes[:, 3]], axis=1)
    return np.round(points).astype(np.int32)


def update_trails(
    trails: Mapping[int, tuple[Point, ...]],
    ids: npt.NDArray[np.integer],
    xyxy: npt.NDArray[np.floating],
    max_len: int = 30,
) -> Trails:
    """Append each track's bottom-centre to its trail; tracks absent from this frame lose theirs.

    Args:
        trails: the previous trails, ID -> points (oldest first); not modified.
        ids: ``(n,)`` track IDs of this frame.
        xyxy: ``(n, 4)`` boxes of this frame.
        max_len: points kept per trail.

    Returns:
        New trails holding exactly the IDs of this frame.
    """
    points = bottom_centres(xyxy)
    out: Trails = {}
    for track_id, (x, y) in zip(np.asarray(ids).reshape(-1).tolist(), points.tolist()):
        previous = trails.get(int(track_id), ())
        out[int(track_id)] = (*previous, (int(x), int(y)))[-max_len:]
    return out


def label_name(name: str) -> str:
    """A name as the video can show it: characters other than printable ASCII (the Hershey fonts have no
    others; control characters would garble the label) become ``?``, cut to ``MAX_NAME_CHARS``."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in name.strip())
    return safe if len(safe) <= MAX_NAME_CHARS else safe[: MAX_NAME_CHARS - 3] + "..."


def track_labels(
    ids: npt.NDArray[np.integer],
    global_ids: npt.NDArray[np.integer] | None = None,
    names: Sequence[str] | None = None,
) -> list[str]:
    """Each track's label: ``"7"``, with ReID ``"7 | g12"``, and ``"7 | g12 Alice"`` for an enrolled person.

    Args:
        ids: ``(n,)`` track IDs.
        global_ids: ``(n,)`` global ids aligned with ``ids``, None without ReID.
        names: ``n`` names aligned with ``ids`` (``""``: nobody enrolled), None without ReID.
    """
    labels = [str(track_id) for track_id in np.asarray(ids).reshape(-1).tolist()]
    if global_ids is not None:
        labels = [f"{label} | g{gid}" for label, gid in zip(labels, np.asarray(global_ids).reshape(-1).tolist())]
    if names is not None:
        labels = [f"{label} {label_name(name)}".rstrip() for label, name in zip(labels, names)]
    return labels


def draw_tracks(
    image: npt.NDArray[np.uint8],
    ids: npt.NDArray[np.integer],
    xyxy: npt.NDArray[np.floating],
    trails: Mapping[int, tuple[Point, ...]] | None = None,
    thickness: int = 2,
    labels: Sequence[str] | None = None,
) -> npt.NDArray[np.uint8]:
    """Draw boxes, ID labels and trails on a copy of a frame.

    Args:
        image: ``(H, W, 3)`` BGR uint8 frame; not modified.
        ids: ``(n,)`` track IDs.
        xyxy: ``(n, 4)`` boxes ``x1, y1, x2, y2`` in the frame's pixels.
        trails: ID -> bottom-centre points (oldest first), drawn as polylines in the ID's colour.
        thickness: line thickness in pixels.
        labels: the text over each box (:func:`track_labels`); default the track ID. Colours stay per track.

    Returns:
        The annotated ``(H, W, 3)`` copy.
    """
    canvas = image.copy()
    boxes = np.round(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)).astype(np.int64)
    ids_list = np.asarray(ids).reshape(-1).tolist()
    texts = [str(track_id) for track_id in ids_list] if labels is None else list(labels)
    for track_id, (x1, y1, x2, y2), label in zip(ids_list, boxes.tolist(), texts, strict=True):
        color = id_color(track_id)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - text_h - baseline - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + text_w + 4, top + text_h + baseline + 2), color, cv2.FILLED)
        cv2.putText(
            canvas,
            label,
            (x1 + 2, top + text_h + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for track_id, points in (trails or {}).items():
        if len(points) >= 2:
            polyline = np.asarray(points, dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [polyline], False, id_color(track_id), thickness, cv2.LINE_AA)
    return canvas


class VideoSink:
    """A browser-playable H.264 MP4 (yuv420p), opened on the first frame at that frame's size (an odd width
    or height loses its last column or row: 4:2:0 needs even sizes).

    The MP4 is fragmented (``empty_moov``, a fragment at each keyframe, one a ``keyframe_s``) and flushed
    after each packet, so a run that is killed leaves a file that plays up to its last second; ``close``
    writes the rest. ``tune=zerolatency`` makes each frame come out of the encoder at once (no lookahead,
    no B-frames) at some cost in size.

    The encoder is libx264 in PyAV's wheel (its bundled FFmpeg), weighed against imageio-ffmpeg (an ffmpeg
    binary fed through a pipe: one more process per camera, and raw frames copied through it) and OpenCV's
    VideoWriter (its wheel has no H.264 encoder: ``mp4v`` is MPEG-4 Part 2, which browsers do not play).

    Args:
        path: the ``.mp4`` to write.
        fps: the frame rate when ``write`` is given no ``ts``.
        preset, crf: x264 speed/size trade-off: a faster preset costs size, not quality at a given crf
            (ultrafast: a third of veryfast's encoding time, half again its size; it keeps cameras fed).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        preset: str = "ultrafast",
        crf: int = 23,
        keyframe_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.preset, self.crf, self.keyframe_s = preset, crf, keyframe_s
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._last_pts = -1

    def _open(self, width: int, height: int) -> None:
        import av  # here: only a video needs it

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            container = av.open(
                str(self.path),
                "w",
                format="mp4",
                container_options={
                    "movflags": "frag_keyframe+empty_moov+default_base_moof",
                    "flush_packets": "1",
                },
            )
        except (av.FFmpegError, OSError) as error:
            raise OSError(f"cannot open {self.path} for writing: {error}") from None
        stream = container.add_stream("libx264", rate=round(self.fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, VIDEO_TIME_BASE)
        stream.codec_context.time_base = Fraction(1, VIDEO_TIME_BASE)
        stream.codec_context.gop_size = max(1, round(self.fps * self.keyframe_s))
        stream.options = {"preset": self.preset, "crf": str(self.crf), "tune": "zerolatency"}
        self._container, self._stream = container, stream

    def write(self, image: npt.NDArray[np.uint8], ts: float | None = None) -> None:
        """Append a BGR ``(H, W, 3)`` frame shown at ``ts`` seconds (default: ``frames / fps``).

        Raises:
            OSError: the video file cannot be opened for writing.
        """
        import av

        height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
        if self._container is None:
            self._open(width, height)
        elif (width, height) != (self._stream.width, self._stream.height):
            image = cv2.resize(image, (self._stream.width, self._stream.height))
            height, width = self._stream.height, self._stream.width
        seconds = self.frames / self.fps if ts is None else ts
        pts = max(round(seconds * VIDEO_TIME_BASE), self._last_pts + 1)  # strictly increasing
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, Fraction(1, VIDEO_TIME_BASE)
        self._container.mux(self._stream.encode(frame))
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Finish the file (safe to call twice)."""
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.mux(self._stream.encode(None))
            finally:
                container.close()
