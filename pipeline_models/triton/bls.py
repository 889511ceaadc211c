"""Calling another model of the server from a python model (BLS: ``pb_utils.InferenceRequest.exec``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils

from pipeline_models.errors import InvalidInputError, Reason, reason_of


def detect(image: bytes, model: str = "detect") -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The ``detect`` ensemble's person boxes ``(n, 4)`` xyxy and scores ``(n,)`` for one encoded image.

    Raises:
        InvalidInputError: detect refused the image (its reason kept: corrupt, too_large, ...).
        RuntimeError: detect failed otherwise.
    """
    tensor = pb_utils.Tensor("IMAGE", np.array([[image]], dtype=np.object_))
    request = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=["BOXES", "SCORES"], inputs=[tensor]
    )
    result = request.exec()
    if result.has_error():
        message = result.error().message()
        reason = reason_of(message)
        if reason is not None and reason is not Reason.INTERNAL:
            raise InvalidInputError(message.replace(f"[{reason.value}] ", "", 1), reason)
        raise RuntimeError(f"{model}: {message}")
    boxes = pb_utils.get_output_tensor_by_name(result, "BOXES").as_numpy()
    scores = pb_utils.get_output_tensor_by_name(result, "SCORES").as_numpy()
    return boxes.reshape(-1, 4).astype(np.float32), scores.reshape(-1).astype(np.float32)
