"""ReID embeddings queued with their batch, from its detections still on the GPU: no host round trip between
the detector's graph and OSNet's.

``launch_embeddings`` needs the boxes on the host (``crop_windows``), so the GPU either runs OSNet beside the
next batch's graph (the two slow each other down) or idles while the host reads the boxes and queues the
crops. Here the crop table is built on the GPU from the detector's rows (:func:`crop_table_on_gpu`, the same
windows as ``crop_windows`` then ``crop_kernel.crop_rows``, in float64 like them), for a guessed number of
crops (a crop bucket, from the crops a frame of recent batches), and OSNet's graph of that bucket is queued
on the detector's stream right behind the batch, before the next one. Once the batch's boxes are on the
host, :meth:`AheadEmbeddings.finish` checks that the guess held them all and that NMS settled inside the
graph (the host finishes an unsettled one, so the GPU's rows would not be the answer's); otherwise the
caller embeds them the usual way. Every OSNet graph replay then runs on that one stream: the graphs share
one memory pool, and two of them must never run at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from pipeline_models.gpu import crop_kernel
from pipeline_models.gpu.detector import bucket_for
from pipeline_models.gpu.reid import TorchEmbedder, crop_windows
from pipeline_models.reid.embedder import rows_per_frame

#: The guessed crops of a batch: the wanted frames times the most crops a frame of recent batches, this much
#: more, rounded up to a crop bucket; the most a frame is forgotten by this factor a batch.
CROPS_MARGIN = 1.2
PER_FRAME_DECAY = 0.98


def crop_table_on_gpu(
    rows: torch.Tensor, sides: torch.Tensor, max_detections: int, padding: torch.Tensor, size: int
) -> torch.Tensor:
    """The first ``size`` rows of the crop table of a batch's kept detections, padding rows after them.

    Args:
        rows: ``(B, K, 6)`` the detector's rows on the GPU (box ``xyxy``, score, keep), by descending score.
        sides: ``(B, 3)`` int64 on the GPU: each frame's address, height and width; address 0 for a frame
            whose detections are not embedded.
        max_detections: detections kept a frame (``kept_detections``).
        padding: ``(7,)`` int64 the row of a blank crop.
        size: rows of the table.

    Returns:
        ``(size, 7)`` int64: ``crop_rows(frames, *crop_windows(frames, boxes)[1:])`` of the embedded frames'
        kept detections, frame by frame, cut after ``size`` rows.
    """
    boxes = rows[..., :4].double()
    kept = rows[..., 5] > 0
    kept &= torch.cumsum(kept.int(), dim=1) <= max_detections
    kept &= sides[:, :1] != 0
    height, width = sides[:, 1:2].double(), sides[:, 2:3].double()
    x1, y1, x2, y2 = boxes.unbind(-1)
    # crop_geometry.valid_boxes: finite, at least a pixel a side once clipped to the frame.
    kept &= torch.isfinite(boxes).all(dim=-1)
    kept &= torch.minimum(x2, width) - x1.clamp_min(0.0) >= 1
    kept &= torch.minimum(y2, height) - y1.clamp_min(0.0) >= 1
    # crop_geometry.clip_boxes (finite boxes only are kept).
    left = torch.minimum(torch.floor(x1).clamp_min(0.0), width - 1)
    top = torch.minimum(torch.floor(y1).clamp_min(0.0), height - 1)
    right = torch.maximum(torch.minimum(torch.ceil(x2).clamp_min(0.0), width), left + 1)
    bottom = torch.maximum(torch.minimum(torch.ceil(y2).clamp_min(0.0), height), top + 1)
    window = torch.stack([left, top, right - left, bottom - top], dim=-1).long()
    values = torch.cat([sides[:, None, :].expand(*kept.shape, 3), window], dim=-1).reshape(-1, 7)
    flat = kept.reshape(-1)
    order = torch.cumsum(flat.long(), dim=0) - 1
    slot = torch.where(flat & (order < size), order, size)  # the rest to a row past the end, dropped
    table = padding.reshape(1, 7).repeat(size + 1, 1)
    table[slot] = values
    return table[:size]


@dataclass
class AheadEmbeddings:
    """One batch's embeddings queued by :meth:`AheadEmbedder.launch`; :meth:`finish` once its boxes are on the host."""

    owner: AheadEmbedder
    frames: list[torch.Tensor]  # the embedded frames, in order
    table: torch.Tensor  # (size, 7) pinned host copy of the table the GPU built
    host: torch.Tensor  # (size, D) pinned host embeddings
    done: torch.cuda.Event

    def finish(self, boxes: Sequence[npt.ArrayLike], settled: bool) -> AheadResult | None:
        """The embeddings of ``boxes`` (the embedded frames' kept detections), or None when the ones queued
        do not hold them (more crops than guessed, or an NMS the host finished): embed them another way."""
        valids, frame_of, windows = crop_windows(self.frames, boxes)
        self.owner.observe(len(frame_of), len(self.frames))
        if not settled or len(frame_of) > len(self.table):
            return None
        return AheadResult(self, valids, crop_kernel.crop_rows(self.frames, frame_of, windows))

    def wait(self) -> None:
        """Waits for the GPU to be done with them (it reads the frames until then)."""
        self.done.synchronize()


@dataclass
class AheadResult:
    """:class:`AheadEmbeddings` checked against the host's boxes (``pipelined.Embedding``)."""

    ahead: AheadEmbeddings
    valids: list[npt.NDArray[np.bool_]]
    rows: npt.NDArray[np.int64]  # the host's crop table of those boxes

    def result(self) -> list[npt.NDArray[np.float32]]:
        """Waits for them: per frame ``(n_i, D)`` float32 (``LaunchedEmbeddings.result``).

        Raises:
            RuntimeError: the GPU's crop table is not the host's (never expected: both compute the same).
        """
        ahead = self.ahead
        ahead.wait()
        k = len(self.rows)
        if not np.array_equal(ahead.table.numpy()[:k], self.rows):
            raise RuntimeError("the crops queued ahead are not the boxes' (the GPU's windows differ)")
        embeddings = ahead.host.numpy()[:k]
        ahead.frames = []
        return rows_per_frame(embeddings, self.valids, ahead.host.shape[1])


class AheadEmbedder:
    """Queues a batch's embeddings on the current stream right behind its detector graph (see the module).

    Args:
        embedder: our OSNet with the crop kernel in its graphs (``crops_in_graph``).
        max_detections: the detector's (``kept_detections``).
    """

    def __init__(self, embedder: TorchEmbedder, max_detections: int) -> None:
        if not embedder.crops_in_graph:
            raise ValueError("embeddings ahead need the crop kernel inside the model's CUDA graphs")
        self.embedder = embedder
        self.max_detections = int(max_detections)
        self.per_frame = 1.0  # the most crops a frame of recent batches
        self._padding = torch.from_numpy(embedder.padding_row).to(embedder.device)

    def size_for(self, frames: int) -> int:
        """The crop bucket guessed for ``frames`` embedded frames."""
        guess = math.ceil(frames * self.per_frame * CROPS_MARGIN)
        return bucket_for(min(max(guess, 1), self.embedder.max_batch), self.embedder.buckets)

    def observe(self, crops: int, frames: int) -> None:
        """A batch's crops, for the next guesses."""
        if frames:
            self.per_frame = max(crops / frames, self.per_frame * PER_FRAME_DECAY)

    @torch.inference_mode()
    def launch(self, rows: torch.Tensor, frames: Sequence[torch.Tensor], wanted: Sequence[bool]) -> AheadEmbeddings:
        """Queues the embeddings of the ``wanted`` frames' kept detections of ``rows`` (``(B, K, 6)`` on the
        GPU, ``B >= len(frames)``) on the current stream; returns at once."""
        device = self.embedder.device
        sides = torch.zeros((len(frames), 3), dtype=torch.int64, pin_memory=True)
        for i, frame in enumerate(frames):
            if wanted[i]:
                if not frame.is_contiguous():
                    raise ValueError("the frames must be contiguous")
                sides.numpy()[i] = frame.data_ptr(), frame.shape[1], frame.shape[2]
        size = self.size_for(int(sum(wanted)))
        crops = crop_table_on_gpu(rows[: len(frames)], sides.to(device, non_blocking=True), self.max_detections,
                                  self._padding, size)  # fmt: skip
        out = self.embedder.embed_table(crops)
        host_table = torch.empty(crops.shape, dtype=torch.int64, pin_memory=True).copy_(crops, non_blocking=True)
        host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True).copy_(out, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return AheadEmbeddings(self, [f for f, w in zip(frames, wanted) if w], host_table, host, done)
