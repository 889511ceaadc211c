"""ReID on the GPU: person crops cut from the frames already decoded there, an OSNet-style ONNX run by PyTorch.

**Crops.** The pixel windows are the CPU path's (``reid.crop_geometry.clip_boxes``); each window is resized to
the model input with OpenCV's ``INTER_LINEAR`` sampling (half-pixel centres, coordinates clamped into the
window, as ``cv2.resize`` of the cut window does), then scaled and ImageNet-normalised with the same
constants. The bilinear taps of every crop of every frame of a batch are gathered in one go from the frames'
uint8 pixels, so no frame is converted to float as a whole and no frame leaves the GPU. Weighed:
``torchvision.ops.roi_align`` (``aligned=True, sampling_ratio=1`` samples the same points, but reads the
frame's pixels just outside the box where cv2 replicates the crop's edge, needs float frames stacked to one
size, and torchvision is absent from the CPU test environment); ``F.grid_sample`` (same, one call per frame).
What remains different from the CPU crops is OpenCV's fixed-point rounding to uint8: under one grey level.
In the server the same points are sampled by one Triton kernel (``crop_kernel``) inside the model's CUDA
graph, reading the frames through a table of their addresses: a batch of crops then costs the host one copy
and one replay instead of some forty PyTorch calls, each of which gives up the GIL that ``gpu_detector``'s
decode, detect and answer threads share. ``crop_frames`` stays the reference it is tested against and the
path where Triton cannot run.

**Model.** A torchreid OSNet ONNX runs as our own OSNet (``pipeline_models.gpu.osnet``) holding its weights,
batch norms folded, FP16 and compiled as the settings say, replayed as one CUDA graph per crop bucket: the
converted network's Python-launched kernels cost about 10 ms a call whatever its size (docs/benchmarks.md).
Any other OSNet-style ONNX is converted once at load by ``onnx2torch`` and run in FP32, eagerly (its
``Shape`` ops build host tensors, which a graph capture refuses); the conversion also checks at load that
our OSNet is the ONNX's network. Weighed: ``onnxruntime-gpu`` (a wheel several times the size a run may
carry, with its own CUDA and cuDNN libraries to match the driver's) and TensorRT (absent from the GPU
machine). The model's signature is checked as the CPU embedder checks it (``embedder.check_signature``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pipeline_models.gpu.detector import BucketGraphs, bucket_for
from pipeline_models.reid.crop_geometry import (
    DEFAULT_INPUT_HW,
    NORM_OFFSET,
    NORM_SCALE,
    clip_boxes,
    valid_boxes,
)
from pipeline_models.reid.embedder import ReidModelError, check_signature, probed_dim, rows_per_frame
from pipeline_models.settings import ReidSettings

log = logging.getLogger(__name__)
_ONNX_FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class _Arg:
    """An ONNX graph input or output as ``embedder.check_signature`` reads it (like ORT's ``NodeArg``)."""

    name: str
    shape: tuple[int | str | None, ...]
    type: str


def _graph_args(values) -> list[_Arg]:
    args = []
    for value in values:
        tensor = value.type.tensor_type
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
        )
        kind = "tensor(float)" if tensor.elem_type == _ONNX_FLOAT else f"onnx elem_type {tensor.elem_type}"
        args.append(_Arg(value.name, shape, kind))
    return args


#: Operators whose output is rank 2 whatever their input (ONNX spec), for ``_with_ranks``.
_RANK_2_OUTPUTS = ("Gemm", "Flatten")


def _with_ranks(model):
    """The model with the ranks of its inner tensors, which onnx2torch reads (BatchNorm's spatial rank).

    ``onnx.shape_inference`` loses them after a ``Reshape`` to a computed shape (torchreid's OSNet export:
    ``x.view(x.size(0), -1)`` before the ``fc`` Gemm and BatchNorm1d), so a Gemm's or Flatten's output
    without a shape gets rank 2, its spec's, and inference runs again from there.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in model.graph.value_info}
    for node in model.graph.node:
        if node.op_type in _RANK_2_OUTPUTS:
            info = known.get(node.output[0])
            if info is None or not info.type.tensor_type.HasField("shape"):
                elem = info.type.tensor_type.elem_type if info is not None else _ONNX_FLOAT
                if info is not None:
                    model.graph.value_info.remove(info)
                rank_2 = onnx.helper.make_tensor_value_info(node.output[0], elem, [None, None])
                model.graph.value_info.append(rank_2)
    return onnx.shape_inference.infer_shapes(model)


def to_device(array: npt.NDArray, device: torch.device) -> torch.Tensor:
    """Host numbers on ``device`` without the host waiting: through pinned memory to a GPU (a copy from
    ordinary, pageable memory first waits for all the stream's work, and a GPU other processes share may
    be busy with theirs)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    # An empty pinned tensor filled, not ``Tensor.pin_memory()``: that first asks the driver whether the
    # memory is pinned already (``is_pinned``, about 1 ms a call when other threads keep the GPU busy).
    pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return pinned.copy_(tensor).to(device, non_blocking=True)


@functools.cache
def _constants(device: torch.device, out_h: int, out_w: int) -> tuple[torch.Tensor, ...]:
    """``NORM_SCALE``, ``NORM_OFFSET`` and the output pixels' centres ``j + 0.5`` along y and x, on
    ``device`` once."""
    centres = [to_device(np.arange(n, dtype=np.float32) + 0.5, device) for n in (out_h, out_w)]
    return to_device(NORM_SCALE, device), to_device(NORM_OFFSET, device), *centres


def _grid_axis(start: torch.Tensor, size: torch.Tensor, centres: torch.Tensor, side: int) -> torch.Tensor:
    """``grid_sample`` coordinates (``align_corners=False``) of cv2 ``INTER_LINEAR``'s source points along
    one axis for windows ``[start, start + size)`` of a frame ``side`` pixels long: ``(N, out)``.

    cv2 samples output pixel ``j`` at ``(j + 0.5) * size / out - 0.5`` clamped into the window, so the
    window's edge is replicated rather than its neighbours read; the bilinear taps are then grid_sample's.
    """
    src = centres[None, :] * (size[:, None] / centres.numel()) - 0.5
    src = start[:, None] + torch.minimum(src.clamp_min(0.0), size[:, None] - 1)
    return (2 * src + 1) / side - 1


def crop_windows(
    frames: Sequence[torch.Tensor], boxes: Sequence[npt.ArrayLike]
) -> tuple[list[npt.NDArray[np.bool_]], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Where every frame's boxes that show pixels are cut from: the crops' geometry, checked, in numpy.

    Args:
        frames: ``(3, H_i, W_i)`` uint8 RGB tensors on one device (as nvJPEG decodes them).
        boxes: per frame, ``(n_i, 4)`` float ``xyxy`` in its pixels.

    Returns:
        per frame the ``(n_i,)`` bool of the boxes cropped (``valid_boxes``; k_i of them), and for the
        ``k = sum k_i`` crops, frame by frame, their frame's index ``(k,)`` and pixel window ``(k, 4)``
        ``x1, y1, x2, y2`` (``clip_boxes``).

    Raises:
        ValueError: a frame that is not uint8 ``(3, H, W)``, boxes not ``(n, 4)``, or different numbers of
            frames and box arrays.
    """
    if len(frames) != len(boxes):
        raise ValueError(f"{len(frames)} frames but {len(boxes)} box arrays")
    for frame in frames:
        if frame.dtype != torch.uint8 or frame.dim() != 3 or frame.shape[0] != 3 or 0 in frame.shape:
            raise ValueError(
                f"frame must be uint8 (3, H, W) with H, W >= 1, got {frame.dtype} {tuple(frame.shape)}"
            )
    # Every frame's boxes at once (one pass of numpy, not one per frame: this runs beside detection).
    arrays = [np.asarray(b, np.float64) for b in boxes]
    arrays = [a.reshape(-1, 4) if a.size else np.empty((0, 4)) for a in arrays]
    counts = np.array([len(a) for a in arrays], np.int64)
    hw = np.array([(int(f.shape[1]), int(f.shape[2])) for f in frames], np.int64).reshape(-1, 2)
    box_hw = np.repeat(hw, counts, axis=0)
    every = np.concatenate(arrays) if arrays else np.empty((0, 4))
    valid = valid_boxes(every, box_hw)
    valids = np.split(valid, np.cumsum(counts)[:-1]) if len(counts) else []
    frame_of = np.repeat(np.arange(len(frames)), counts)[valid]
    return valids, frame_of, clip_boxes(every[valid], box_hw[valid])


def sample_windows(
    frames: Sequence[torch.Tensor],
    frame_of: npt.NDArray[np.int64],
    windows: npt.NDArray[np.int64],
    input_hw: tuple[int, int],
) -> torch.Tensor:
    """The crops of :func:`crop_windows`: ``(k, 3, height, width)`` float32, ImageNet-normalised, one
    ``grid_sample`` a frame size (the reference :mod:`~pipeline_models.gpu.crop_kernel` equals)."""
    out_h, out_w = input_hw
    device = frames[0].device if len(frames) else torch.device("cpu")
    if not len(frame_of):
        return torch.empty((0, 3, out_h, out_w), dtype=torch.float32, device=device)
    hw = np.array([(int(f.shape[1]), int(f.shape[2])) for f in frames], np.int64).reshape(-1, 2)
    scale, shift, centres_y, centres_x = _constants(device, out_h, out_w)
    parts, order = [], []
    for size in np.unique(hw[frame_of], axis=0):  # one sampling a frame size (most servers: one size)
        rows = np.flatnonzero((hw[frame_of] == size).all(axis=1))
        used, slot_of = np.unique(frame_of[rows], return_inverse=True)
        slots = np.bincount(slot_of)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(slots) - slots, slots)
        per = int(slots.max())  # each frame's crops padded to the most any frame has
        # The windows, x, y, width, height, in (frame, rank) slots; unused slots sample one pixel.
        table = np.tile(np.array([0, 0, 1, 1], np.float32), (len(used) * per, 1))
        win = windows[rows]
        table[slot_of * per + rank] = np.stack(
            [win[:, 0], win[:, 1], win[:, 2] - win[:, 0], win[:, 3] - win[:, 1]], axis=1
        )
        x, y, w, h = to_device(table, device).unbind(1)
        gx = _grid_axis(x, w, centres_x, int(size[1]))[:, None, :].expand(-1, out_h, -1)
        gy = _grid_axis(y, h, centres_y, int(size[0]))[:, :, None].expand(-1, -1, out_w)
        grid = torch.stack([gx, gy], dim=-1).reshape(len(used), per * out_h, out_w, 2)
        pixels = torch.stack([frames[i] for i in used]).float()  # (F, 3, H, W), 0..255
        sampled = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled.reshape(len(used), 3, per, out_h, out_w).transpose(1, 2).reshape(-1, 3, out_h, out_w)
        parts.append(sampled[to_device(slot_of * per + rank, device)])
        order.append(rows)
    crops = parts[0] if len(parts) == 1 else torch.cat(parts)[to_device(np.argsort(np.concatenate(order)), device)]
    return (crops * scale + shift).contiguous()


def crop_frames(
    frames: Sequence[torch.Tensor],
    boxes: Sequence[npt.ArrayLike],
    input_hw: tuple[int, int] = DEFAULT_INPUT_HW,
) -> tuple[torch.Tensor, list[npt.NDArray[np.bool_]]]:
    """The ReID input for every frame's boxes that show pixels (:func:`crop_windows`, :func:`sample_windows`).

    Returns:
        ``(sum k_i, 3, height, width)`` float32 on the frames' device, ImageNet-normalised RGB, frame by
        frame, and per frame the ``(n_i,)`` bool of the boxes cropped.

    Raises:
        ValueError: as :func:`crop_windows`, or a bad ``input_hw``.
    """
    out_h, out_w = int(input_hw[0]), int(input_hw[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input_hw must be positive, got {input_hw}")
    valids, frame_of, windows = crop_windows(frames, boxes)
    return sample_windows(frames, frame_of, windows, (out_h, out_w)), valids


#: Crops per CUDA graph, about 1.5x apart (a batch is padded by at most half); capped by ``max_batch``.
CROP_BUCKETS = (8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
#: Our OSNet must give the converted ONNX's output on a probe batch within this (relative to the largest
#: value; FP32 both: only the order of sums differs, ~1e-6; a wrong weight or layer is off by > 1e-2).
SAME_NETWORK_RTOL = 1e-4


class ReidCompileError(RuntimeError):
    """``torch.compile`` of our OSNet failed at load (the ONNX itself is fine)."""


def crop_buckets(max_batch: int) -> tuple[int, ...]:
    """The CUDA graph batch sizes for at most ``max_batch`` crops a pass."""
    return (*(b for b in CROP_BUCKETS if b < max_batch), max_batch)


class TorchEmbedder:
    """Appearance embeddings of GPU crops (:func:`crop_frames`) by an OSNet-style ONNX run in PyTorch.

    A torchreid OSNet ONNX runs as our own OSNet (``pipeline_models.gpu.osnet``: its weights, batch norms
    folded) replayed as one CUDA graph per crop bucket (:data:`CROP_BUCKETS`); the ONNX converted by
    ``onnx2torch`` checks at load that it is the same network (:data:`SAME_NETWORK_RTOL`), and runs any
    other OSNet-style ONNX itself, eagerly (its ``Shape`` ops cannot be captured into a graph). On CUDA the
    graphs of our OSNet begin with the crop kernel (``crops_in_graph``): :meth:`embed_windows` feeds them.

    Attributes:
        path: the ONNX file.
        input_hw: the model's input ``(height, width)``, read from the model.
        dim: embedding size ``D``.
        max_batch: most crops per forward pass (the model's own batch size when it is fixed).
        network: ``"osnet"`` (ours) or ``"onnx2torch"`` (the converted ONNX).
        half: FP16 weights and activations (our OSNet only), channels-last.
        crops_in_graph: the CUDA graphs cut the crops themselves (our OSNet on CUDA, the Triton crop kernel
            working): :meth:`embed_windows`; :meth:`embed` then runs the model eagerly.
    """

    def __init__(
        self,
        path: str | Path,
        device: torch.device | str = "cuda",
        max_batch: int = ReidSettings.reid_max_batch,
        output: str | None = None,
        *,
        half: bool,
        compiled: bool,
        crop_kernel: bool = True,
    ) -> None:
        """Load, check and convert the model; run it once on a blank crop.

        Args:
            half: FP16 (our OSNet only): ``GpuReidSettings.reid_fp16``.
            compiled: our OSNet through ``torch.compile``: ``GpuReidSettings.reid_compile``. On a CUDA
                device our OSNet is replayed as CUDA graphs; elsewhere (tests on the CPU) it runs eagerly.
            crop_kernel: the crop kernel inside those graphs: ``GpuReidSettings.reid_crop_kernel``.

        Raises:
            FileNotFoundError: the file is missing.
            ValueError: ``max_batch`` < 1.
            ReidModelError: the model is not ``[N, 3, H, W]`` float32 -> ``[N, D]`` float32, or cannot be
                converted.
            ReidCompileError: ``compiled`` and ``torch.compile`` failed.
        """
        import onnx
        from onnx2torch import convert

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ReID model not found: {self.path}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.device = torch.device(device)
        model = onnx.load(str(self.path))
        initializers = {init.name for init in model.graph.initializer}
        inputs = [arg for arg in _graph_args(model.graph.input) if arg.name not in initializers]
        outputs = _graph_args(model.graph.output)
        inp, out = check_signature(self.path, inputs, outputs, output)
        self._output_index = [o.name for o in outputs].index(out.name)
        self._several_outputs = len(outputs) > 1
        try:
            self.model = convert(_with_ranks(model)).eval().to(self.device)
        except Exception as exc:
            raise ReidModelError(f"{self.path}: onnx2torch cannot convert it: {exc}") from exc
        self.input_hw = (int(inp.shape[2]), int(inp.shape[3]))
        self._fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] > 0
        self.max_batch = int(inp.shape[0]) if self._fixed_batch else int(max_batch)
        rows = self.max_batch if self._fixed_batch else 1
        probe = self._converted(torch.zeros((rows, 3, *self.input_hw), device=self.device))
        self.dim = probed_dim(self.path, out, tuple(probe.shape), rows)
        self.network, self.half, self._graphs, self.crops_in_graph = "onnx2torch", False, None, False
        osnet = self._own_osnet(model)
        if osnet is not None:
            self.network, self.half, self.model = "osnet", bool(half), osnet
            if half:
                self.model = osnet.half().to(memory_format=torch.channels_last)
            if compiled:
                self.model = torch.compile(self.model)
            self._dtype = torch.float16 if half else torch.float32
            graphed = self.device.type == "cuda"
            self._kernel = self._crop_kernel() if graphed and crop_kernel else None
            self.crops_in_graph = self._kernel is not None
            fn, example = (self._embed_table, self._table) if self.crops_in_graph else (self._embed, self._example)
            try:  # torch.compile compiles at the first pass: the captures' warm-up, or this one's elsewhere
                self._graphs = BucketGraphs(fn, example, crop_buckets(self.max_batch), self.device, enabled=graphed)
                if self.crops_in_graph:
                    self.embed_windows([self._blank], np.zeros(1, np.int64), np.array([[0, 0, 1, 1]]))
                else:
                    self._run(torch.zeros((1, 3, *self.input_hw), device=self.device))
            except Exception as exc:
                if not compiled:
                    raise
                raise ReidCompileError(
                    f"{self.path}: torch.compile of our OSNet failed ({type(exc).__name__}: {exc}); it needs a "
                    "C compiler and the Python headers, or --set reid_compile=false runs it uncompiled"
                ) from exc

    def _crop_kernel(self):
        """``crop_kernel`` once it has cut a blank frame right on this GPU, else None (``crop_frames``'s
        sampling then feeds the graphs: Triton missing, or no compiler for its launcher)."""
        self._blank = torch.zeros((3, 1, 1), dtype=torch.uint8, device=self.device)
        try:
            from pipeline_models.gpu import crop_kernel

            self._padding = crop_kernel.crop_rows([self._blank], np.zeros(1, np.int64), np.array([[0, 0, 1, 1]]))
            out = crop_kernel.crop(to_device(self._padding, self.device), torch.empty((1, 3, *self.input_hw),
                                   device=self.device))  # fmt: skip
            expected = torch.from_numpy(NORM_OFFSET).to(self.device).expand_as(out)
            if not torch.allclose(out, expected, rtol=0, atol=1e-6):
                raise RuntimeError(f"a blank crop gave {out.unique().tolist()[:6]}, not the normalised 0")
        except Exception as exc:  # noqa: BLE001 - any failure: the reference path, said in the log
            log.warning("%s: the Triton crop kernel is unavailable (%s: %s): crops by grid_sample, outside the "
                        "CUDA graphs", self.path, type(exc).__name__, exc)
            return None
        return crop_kernel

    def _own_osnet(self, model) -> torch.nn.Module | None:
        """Our OSNet with the ONNX's weights if it is one and gives the converted ONNX's output, else None."""
        from pipeline_models.gpu.osnet import NotOSNetError, fold_batch_norms, from_onnx

        try:
            osnet = fold_batch_norms(from_onnx(model)).to(self.device)
        except NotOSNetError as exc:
            log.info("%s: not a torchreid OSNet (%s): the converted ONNX runs it, eagerly", self.path, exc)
            return None
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn((4, 3, *self.input_hw), generator=generator).to(self.device)
        cudnn = torch.backends.cudnn  # full FP32: cuDNN's TF32 convs (its default) err by ~1e-3 (docs/benchmarks.md)
        with torch.inference_mode(), cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                                                 deterministic=cudnn.deterministic, allow_tf32=False):
            ours, theirs = osnet(probe), self._converted(probe)
        error = float((ours - theirs).abs().max()) / max(float(theirs.abs().max()), 1e-12)
        if ours.shape != theirs.shape or not error <= SAME_NETWORK_RTOL:
            log.warning("%s: OSNet weights, but not the ONNX's output (relative error %.2g): the converted "
                        "ONNX runs it, eagerly", self.path, error)
            return None
        return osnet

    def _crops(self, size: int) -> torch.Tensor:
        layout = torch.channels_last if self.half else torch.contiguous_format
        return torch.empty((size, 3, *self.input_hw), device=self.device, dtype=self._dtype, memory_format=layout)

    def _example(self, size: int) -> tuple[torch.Tensor]:
        return (self._crops(size).zero_(),)

    def _embed(self, crops: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(crops),)

    def _table(self, size: int) -> tuple[torch.Tensor]:
        """A crop table of ``size`` blank crops on the GPU (every row a valid address)."""
        return (to_device(np.repeat(self._padding, size, axis=0), self.device),)

    def _embed_table(self, table: torch.Tensor) -> tuple[torch.Tensor]:
        """The unit embeddings of a crop table's crops: the crop kernel then the model, one CUDA graph."""
        crops = self._crops(len(table))
        if len(table) > 1:
            torch._dynamo.mark_dynamic(crops, 0)  # one compile for every bucket (as ``BucketGraphs``)
        out = self.model(self._kernel.crop(table, crops)).float()
        return (F.normalize(out, dim=1, eps=1e-12),)

    @torch.inference_mode()
    def _converted(self, batch: torch.Tensor) -> torch.Tensor:
        result = self.model(batch)
        return (result[self._output_index] if self._several_outputs else result).float()

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        """One pass of at most ``max_batch`` crops: ``(k, D)`` float32, a tensor of its own."""
        if self._graphs is None:
            k = len(batch)
            if self._fixed_batch and k < self.max_batch:
                batch = torch.cat([batch, batch.new_zeros((self.max_batch - k, *batch.shape[1:]))])
            return self._converted(batch)[:k]
        batch = batch.to(self._dtype)
        if self.crops_in_graph:  # the graphs take crop tables: crops given run the model eagerly
            return self.model(batch.contiguous(memory_format=torch.channels_last) if self.half else batch).float()
        return self._graphs(batch)[0].to(torch.float32, copy=True)

    @torch.inference_mode()
    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``(N, D)`` float32 embeddings on the device, ``max_batch`` crops a pass.

        Raises:
            ValueError: crops of another shape.
        """
        if crops.dim() != 4 or tuple(crops.shape[1:]) != (3, *self.input_hw):
            height, width = self.input_hw
            raise ValueError(f"crops must be (N, 3, {height}, {width}), got {tuple(crops.shape)}")
        crops = crops.to(self.device, torch.float32)
        chunks = [self._run(crops[i : i + self.max_batch]) for i in range(0, len(crops), self.max_batch)]
        out = torch.cat(chunks) if chunks else torch.empty((0, self.dim), device=self.device)
        return F.normalize(out, dim=1, eps=1e-12)

    @property
    def buckets(self) -> tuple[int, ...]:
        """The crops of each CUDA graph (``crops_in_graph``: a table of as many rows)."""
        return self._graphs.buckets

    @property
    def padding_row(self) -> npt.NDArray[np.int64]:
        """``(7,)`` the crop table row of a blank crop (``crops_in_graph``)."""
        return self._padding[0]

    @torch.inference_mode()
    def embed_table(self, table: torch.Tensor) -> torch.Tensor:
        """The unit ``(k, D)`` embeddings of a crop table of ``k`` rows on the GPU (``crops_in_graph``; ``k``
        one of :attr:`buckets`), queued on the current stream: a view of the graph's output, valid until the
        next call."""
        (out,) = self._graphs(table)
        return out

    @torch.inference_mode()
    def embed_windows(
        self, frames: Sequence[torch.Tensor], frame_of: npt.NDArray[np.int64], windows: npt.NDArray[np.int64]
    ) -> torch.Tensor:
        """:meth:`embed` of the crops :func:`crop_windows` describes, cut inside the model's CUDA graphs
        (``crops_in_graph`` only): per ``max_batch`` crops one copy of their table and one graph replay.
        The result is valid until the next call (the last pass's graph output)."""
        rows = self._kernel.crop_rows(list(frames), frame_of, windows)
        chunks = []
        for start in range(0, len(rows), self.max_batch):
            part = rows[start : start + self.max_batch]
            # The whole bucket, padded with the blank frame's rows: the graph reads every row it holds.
            host = torch.empty((bucket_for(len(part), self._graphs.buckets), len(self._padding[0])),
                               dtype=torch.int64, pin_memory=True)  # fmt: skip
            table = host.numpy()
            table[: len(part)], table[len(part) :] = part, self._padding
            (out,) = self._graphs(host)
            chunks.append(out[: len(part)] if len(rows) <= self.max_batch else out[: len(part)].clone())
        return torch.cat(chunks) if len(chunks) != 1 else chunks[0]


@dataclass
class LaunchedEmbeddings:
    """One :func:`launch_embeddings` on its way to the host; :meth:`result` waits for it.

    Attributes:
        valids: per frame, which of its boxes were cropped.
        host: ``(k, D)`` float32 on the host (pinned from a GPU): filled once ``done`` has passed.
        done: the copy's CUDA event (None on the CPU: already filled).
        keep: what the GPU still reads or writes until ``done``: the frames and the device embeddings.
    """

    valids: list[npt.NDArray[np.bool_]]
    host: torch.Tensor
    done: torch.cuda.Event | None = None
    keep: tuple = ()

    def result(self) -> list[npt.NDArray[np.float32]]:
        """Per frame, ``(n_i, D)`` float32: unit rows, NaN rows where the box showed no pixels (as the CPU
        ``embedding_step.embed_frames``)."""
        if self.done is not None:
            self.done.synchronize()
        self.keep = ()
        return rows_per_frame(self.host.numpy(), self.valids, self.host.shape[1])


def launch_embeddings(
    embedder: TorchEmbedder, frames: Sequence[torch.Tensor], boxes: Sequence[npt.ArrayLike]
) -> LaunchedEmbeddings:
    """Every frame's track embeddings queued on the current stream, without waiting for the GPU: the crops
    and the model in one graph replay (``crops_in_graph``; else one sampling of all crops, one model call),
    one copy to the host. The frames must stay alive until ``done`` (``LaunchedEmbeddings.keep``)."""
    valids, frame_of, windows = crop_windows(frames, boxes)
    if not len(frame_of):
        return LaunchedEmbeddings(valids, torch.empty((0, embedder.dim)))
    if embedder.crops_in_graph:
        embedded = embedder.embed_windows(frames, frame_of, windows)
    else:
        embedded = embedder.embed(sample_windows(frames, frame_of, windows, embedder.input_hw))
    if embedded.device.type != "cuda":
        return LaunchedEmbeddings(valids, embedded.cpu())
    host = torch.empty(embedded.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(embedded, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return LaunchedEmbeddings(valids, host, done, (tuple(frames), embedded))


def embed_frames(
    embedder: TorchEmbedder, frames: Sequence[torch.Tensor], boxes: Sequence[npt.ArrayLike]
) -> list[npt.NDArray[np.float32]]:
    """Every frame's track embeddings (:func:`launch_embeddings`, waited for): ``LaunchedEmbeddings.result``."""
    return launch_embeddings(embedder, frames, boxes).result()
