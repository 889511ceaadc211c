"""ONNX Runtime wrapper for an OSNet-style ReID model: ``[N, 3, H, W]`` float32 in, ``[N, D]`` out.

The model is checked when it loads (one input of rank 4 with 3 channels and a fixed height and width, float32;
an output of rank 2), then run once on a blank crop so that a model whose real output disagrees fails at
load, not on the first frame. Embeddings come back L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline_models.detectors import make_session
from pipeline_models.reid.unit_vectors import normalise_rows
from pipeline_models.settings import ReidSettings

#: Crops per ONNX Runtime call; larger batches are run in chunks (bounds the activation memory).
DEFAULT_MAX_BATCH = ReidSettings.reid_max_batch
_FLOAT = "tensor(float)"


class ReidModelError(ValueError):
    """The ONNX file is not an OSNet-style ReID model this wrapper can run."""


def _fixed(dim: object) -> bool:
    return isinstance(dim, int) and dim > 0


def check_signature(
    path: Path, inputs: Sequence[Any], outputs: Sequence[Any], output: str | None
) -> tuple[Any, Any]:
    """The model's one input and its embedding output, checked: ``[N, 3, H, W]`` float32 with fixed ``H, W``
    -> rank-2 float32 (shared by this ONNX Runtime embedder and the GPU one, ``pipeline_models.gpu.reid``).

    Args:
        path: the file (for messages).
        inputs, outputs: items with ``name``, ``shape`` (ints for fixed dims) and ``type``
            (``tensor(float)``), as ONNX Runtime's ``NodeArg``.
        output: name of the embedding output when the model has several.

    Raises:
        ReidModelError: naming what does not fit.
    """
    if len(inputs) != 1:
        raise ReidModelError(f"{path}: a ReID model has one input, this one has {len(inputs)}")
    inp = inputs[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise ReidModelError(f"{path}: input {inp.name!r} must be rank 4 [N, 3, H, W], got {shape}")
    if shape[1] != 3 or not _fixed(shape[2]) or not _fixed(shape[3]):
        raise ReidModelError(
            f"{path}: input {inp.name!r} must be [N, 3, H, W] with fixed H and W, got {shape}"
        )
    if inp.type != _FLOAT:
        raise ReidModelError(f"{path}: input {inp.name!r} must be float32, got {inp.type}")
    if output is None:
        if len(outputs) != 1:
            names = [o.name for o in outputs]
            raise ReidModelError(f"{path}: {len(outputs)} outputs {names}; name the embedding one")
        out = outputs[0]
    else:
        matches = [o for o in outputs if o.name == output]
        if not matches:
            raise ReidModelError(f"{path}: no output {output!r} (has {[o.name for o in outputs]})")
        out = matches[0]
    if len(out.shape) != 2:
        raise ReidModelError(
            f"{path}: output {out.name!r} must be rank 2 [N, D], got {list(out.shape)}"
        )
    if out.type != _FLOAT:
        raise ReidModelError(f"{path}: output {out.name!r} must be float32, got {out.type}")
    return inp, out


def probed_dim(path: Path, out: Any, probe_shape: Sequence[int], rows: int) -> int:
    """The embedding size ``D`` from the output shape of a probe run on ``rows`` blank crops.

    Raises:
        ReidModelError: the output is not ``[rows, D]`` (with the declared ``D`` when it is fixed).
    """
    declared_dim = out.shape[1]
    wrong_dim = _fixed(declared_dim) and len(probe_shape) == 2 and probe_shape[1] != declared_dim
    if len(probe_shape) != 2 or probe_shape[0] != rows or wrong_dim:
        raise ReidModelError(f"{path}: output {out.name!r} came back {tuple(probe_shape)}, expected [N, D]")
    return int(probe_shape[1])


def rows_per_frame(
    embedded: npt.NDArray[np.float32], valids: Sequence[npt.NDArray[np.bool_]], dim: int
) -> list[npt.NDArray[np.float32]]:
    """The ``(k, D)`` embeddings of every frame's cropped boxes, one frame after another, back per frame:
    ``(n_i, D)`` float32 with NaN rows where ``valids[i]`` says the box showed no pixels."""
    out, start = [], 0
    for valid in valids:
        rows = np.full((len(valid), dim), np.nan, np.float32)
        k = int(valid.sum())
        rows[valid] = embedded[start : start + k]
        start += k
        out.append(rows)
    return out


class Embedder:
    """Appearance embeddings of person crops (see :func:`pipeline_models.reid.crops.crop_batch`).

    Attributes:
        path: the ONNX file.
        input_hw: the model's input ``(height, width)``, read from the model.
        dim: embedding size ``D``.
        max_batch: most crops per ONNX Runtime call (the model's own batch size when it is fixed).
    """

    def __init__(
        self,
        path: str | Path,
        threads: int = 1,
        max_batch: int = DEFAULT_MAX_BATCH,
        output: str | None = None,
    ) -> None:
        """Load and check the model.

        Args:
            path: ONNX file.
            threads: ONNX Runtime intra-op threads (0: ONNX Runtime's default, one per core).
            max_batch: most crops per call (>= 1).
            output: name of the embedding output when the model has several.

        Raises:
            FileNotFoundError: the file is missing.
            ValueError: ``max_batch`` < 1.
            ReidModelError: the model's input or output is not ``[N, 3, H, W]`` float32 -> ``[N, D]`` float32.
        """
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ReID model not found: {self.path}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._session = make_session(self.path, threads)
        inp, out = check_signature(self.path, self._session.get_inputs(), self._session.get_outputs(), output)
        self._input, self._output = inp.name, out.name
        shape = list(inp.shape)
        self.input_hw = (int(shape[2]), int(shape[3]))
        self.max_batch = int(shape[0]) if _fixed(shape[0]) else int(max_batch)
        self._fixed_batch = _fixed(shape[0])
        rows = self.max_batch if self._fixed_batch else 1
        probe = self._run(np.zeros((rows, 3, *self.input_hw), np.float32))
        self.dim = probed_dim(self.path, out, probe.shape, rows)

    def _run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(self._session.run([self._output], {self._input: batch})[0], np.float32)

    def embed(self, crops: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """L2-normalised embeddings of preprocessed crops, run ``max_batch`` at a time.

        Args:
            crops: ``(N, 3, height, width)`` float32, as :func:`crop_batch` makes them.

        Returns:
            ``(N, D)`` float32 unit rows; ``(0, D)`` for no crops.

        Raises:
            ValueError: crops of another shape.
        """
        batch = np.ascontiguousarray(crops, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (3, *self.input_hw):
            raise ValueError(
                f"crops must be (N, 3, {self.input_hw[0]}, {self.input_hw[1]}), got {batch.shape}"
            )
        n = len(batch)
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, self.max_batch):
            chunk = batch[start : start + self.max_batch]
            k = len(chunk)
            if self._fixed_batch and k < self.max_batch:  # pad a fixed-batch model's last chunk
                chunk = np.concatenate([chunk, np.zeros((self.max_batch - k, *chunk.shape[1:]), np.float32)])
            out[start : start + k] = self._run(chunk)[:k]
        return normalise_rows(out)
