"""Sending one camera's frames to the ``pipeline`` ensemble over gRPC, one frame in flight.

The contract: ``IMAGE`` is one encoded JPEG per request (BYTES, shape ``[1, 1]`` with the batch dim);
``sequence_id`` is the camera id (a positive integer or a string such as ``"gate-3"``: at most 128
UTF-8 bytes, no control characters), ``sequence_start`` is set on the camera's first frame and
``sequence_end`` on its last. Every request carries the parameter ``frame_index`` (0, 1, 2, ... per
camera stream, without gaps: a frame the server refused gives its index to the next one), so the
tracker tracks the camera's frames in index order whatever order the ensemble delivers them in. A caller
that drops frames on purpose (a live source whose newest frame wins) passes each frame's own index
instead (``answer(..., index=...)``): after a gap the frame also carries ``previous_frame_index``, the
index of the camera's frame sent before it, so the server predicts across the gap and tracks the frame at
once instead of waiting ``reorder_wait_s`` for frames that never come (never on a START, which releases
whatever index it has).
Every request carries the camera id as the header ``camera-id`` too (``cameras.routing_value``): a gateway in
front of several servers routes each camera to one of them by it (README "Scaling out").
Outputs ``TRACK_IDS`` ``[1, n]``, ``BOXES`` ``[1, n, 4]`` (xyxy, original pixels), ``SCORES`` ``[1, n]``.
With ReID on the server (``--set reid_model=PATH``) ``pipeline`` also has ``GLOBAL_IDS`` INT64 ``[1, n]``
and ``NAMES`` BYTES ``[1, n]`` (``""``: no enrolled person), aligned with ``TRACK_IDS``; without ReID they
do not exist, and requesting them is an error. So the client reads the model's metadata once per camera
stream (or takes what the caller read once) and requests them only when the model has them.

Restart rule: when the server answers that it does not know the camera's sequence (it was reclaimed
after the idle window, or the server restarted) the frame is sent again with ``sequence_start=True``.
The server then starts a fresh tracker for the camera, so track IDs restart at 1.

Capacity: a START refused because the server holds ``max_cameras`` cameras (reason ``capacity``) leaves
nothing behind; the camera's next frame is sent with START again, so it is admitted once there is room.

Reconnect policy (opt-in, ``reconnect_s > 0``): when the server cannot be reached (gRPC UNAVAILABLE), or
a step of the pipeline is down while the server's watchdog restarts it (``OUTAGE_PHRASES``: its stub is
"not healthy", or the ensemble is unloaded meanwhile), the same frame is sent again with exponential
backoff until the server answers or ``reconnect_s`` has passed. A server that restarted meanwhile no
longer knows the camera's sequence, so the resent frame meets the restart rule above: it goes again with
START and track IDs restart at 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.sources import encode_jpeg, with_last_flag
from pipeline_models.cameras import (
    ROUTING_HEADER,
    SEQUENCE_START_HEADER,
    CameraId,
    check_camera_id,
    routing_value,
)
from pipeline_models.errors import Reason, reason_of
from pipeline_models.types import Tracks

LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = "pipeline"
INPUT_NAME = "IMAGE"
OUTPUT_NAMES = ("TRACK_IDS", "BOXES", "SCORES")
GLOBAL_IDS, NAMES = "GLOBAL_IDS", "NAMES"
IDENTITY_OUTPUTS = (GLOBAL_IDS, NAMES)  # only when the server runs ReID
FRAME_INDEX = "frame_index"  # request parameter: the frame's position in the camera's stream
PREVIOUS_FRAME_INDEX = "previous_frame_index"  # request parameter: the frame sent before, after a gap

# Triton's own sequence-batcher message for a non-START request of an unknown sequence (it carries no
# reason token of ours); our models say the same with ``Reason.NO_SEQUENCE``.
TRITON_NO_SEQUENCE_PHRASE = "must specify the START flag"
# A model that is down or being restarted (pipeline_server.watchdog): its python stub died or hung
# ("Stub process 'x' is not healthy."), or it and the ensembles that use it are unloaded meanwhile
# ("Request for unknown model: 'pipeline' has no available versions", "... is not ready").
OUTAGE_PHRASES = ("is not healthy", "has no available versions", "is not ready")
_OUTAGE_STATUSES = (None, "StatusCode.INTERNAL", "StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE")
_INVALID_ARG = "StatusCode.INVALID_ARGUMENT"
_UNAVAILABLE = "StatusCode.UNAVAILABLE"
# Triton answers a request without the restricted protocol's key with UNAVAILABLE too; that is no
# outage, so it is never retried.
REFUSED_KEY_PHRASE = "restricted"
RECONNECT_FIRST_WAIT_S = 0.1
RECONNECT_MAX_WAIT_S = 2.0


class ServerUnavailableError(RuntimeError):
    """The server cannot be reached, or the model is not ready.

    Attributes:
        retriable: whether waiting can help (False e.g. for a refused key); ``CameraStream`` resends only then.
    """

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class MalformedAnswerError(ValueError):
    """The server answered a frame with outputs that disagree (e.g. ``GLOBAL_IDS`` not aligned with the
    tracks): that frame fails, the camera goes on."""


@dataclass(frozen=True)
class FrameResult:
    """The server's answer for one frame.

    Attributes:
        index: 0-based frame index in the camera's stream (the MOT frame number is ``index + 1``).
        tracks: the tracks (empty when the request failed).
        latency_s: wall seconds of the request(s) for this frame, restart included.
        restarted: the server asked for a new sequence and the frame was resent with START.
        error: the server's error message when the frame failed, else None.
        global_ids: ``(n,)`` int64 global identities aligned with ``tracks``; None when the server has
            no ReID (or the frame failed).
        names: ``n`` enrolled names aligned with ``tracks`` (``""``: nobody enrolled matched); None as above.
    """

    index: int
    tracks: Tracks
    latency_s: float
    restarted: bool = False
    error: str | None = None
    global_ids: npt.NDArray[np.int64] | None = None
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Answer:
    """What the server answered for one frame: its tracks and, with ReID, their global ids and names."""

    tracks: Tracks
    restarted: bool = False
    global_ids: npt.NDArray[np.int64] | None = None
    names: tuple[str, ...] | None = None


def is_restart_error(error: InferenceServerException) -> bool:
    """True when the error says the camera's sequence is unknown and a new one must be started."""
    message = error.message() or ""
    if error.status() not in (None, _INVALID_ARG):
        return False
    return reason_of(message) is Reason.NO_SEQUENCE or TRITON_NO_SEQUENCE_PHRASE in message


def is_outage_error(error: InferenceServerException) -> bool:
    """True when the error says a model is down for now (unreachable server, restarting step): retry later."""
    status = error.status()
    if status == _UNAVAILABLE:
        return REFUSED_KEY_PHRASE not in (error.message() or "")
    return status in _OUTAGE_STATUSES and any(p in (error.message() or "") for p in OUTAGE_PHRASES)


def backoff_waits(first_s: float, max_s: float) -> Iterator[float]:
    """Waits between reconnect attempts: ``first_s``, doubling, capped at ``max_s`` (endless)."""
    wait = first_s
    while True:
        yield wait
        wait = min(2.0 * wait, max_s)


def image_input(jpeg: bytes) -> grpcclient.InferInput:
    """The ``IMAGE`` input: one encoded image as BYTES, shape ``[1, 1]``."""
    tensor = grpcclient.InferInput(INPUT_NAME, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[jpeg]], dtype=np.object_))
    return tensor


def tracks_from_arrays(
    ids: npt.NDArray[np.integer], xyxy: npt.NDArray[np.floating], scores: npt.NDArray[np.floating]
) -> Tracks:
    """Tracks from the ensemble's outputs (batch dim included or not).

    Args:
        ids: ``[1, n]`` or ``(n,)`` track IDs.
        xyxy: ``[1, n, 4]`` or ``(n, 4)`` boxes ``x1, y1, x2, y2``.
        scores: ``[1, n]`` or ``(n,)`` scores.

    Raises:
        ValueError: the arrays disagree on ``n``.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if not len(ids) == len(boxes) == len(scores):
        raise ValueError(f"server outputs disagree: {len(ids)} ids, {len(boxes)} boxes, {len(scores)} scores")
    tlwh = boxes.copy()
    tlwh[:, 2:] -= tlwh[:, :2]
    return Tracks(ids, tlwh, scores)


def identity_outputs(metadata: Mapping[str, object]) -> tuple[str, ...]:
    """Which of ``GLOBAL_IDS``, ``NAMES`` a model has, from its metadata (``get_model_metadata(...,
    as_json=True)``); ``()`` for a server without ReID."""
    outputs = metadata.get("outputs", ())
    names = {str(out.get("name")) for out in outputs if isinstance(out, Mapping)}  # type: ignore[union-attr]
    return tuple(name for name in IDENTITY_OUTPUTS if name in names)


def read_identity_outputs(
    client: grpcclient.InferenceServerClient,
    model: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> tuple[str, ...]:
    """Ask the server's metadata of ``model`` which identity outputs it has (:func:`identity_outputs`).

    Raises:
        InferenceServerException: the metadata call failed.
    """
    metadata = client.get_model_metadata(
        model, headers=dict(headers) if headers else None, as_json=True, client_timeout=timeout_s
    )
    return identity_outputs(metadata)


def global_ids_from_array(raw: npt.NDArray[np.integer] | None, n: int) -> npt.NDArray[np.int64]:
    """``GLOBAL_IDS`` (``[1, n]`` or ``(n,)``) as ``(n,)`` int64.

    Raises:
        MalformedAnswerError: missing, not integers, or not ``n`` of them.
    """
    if raw is None:
        raise MalformedAnswerError(f"malformed answer: no {GLOBAL_IDS} output for {n} tracks")
    ids = np.asarray(raw).reshape(-1)
    if len(ids) != n or not np.issubdtype(ids.dtype, np.integer):
        raise MalformedAnswerError(
            f"malformed answer: {n} {OUTPUT_NAMES[0]} but {len(ids)} {GLOBAL_IDS} ({ids.dtype})"
        )
    return ids.astype(np.int64)


def decode_name(value: object) -> str:
    """One ``NAMES`` element as text: UTF-8, and bytes that are not UTF-8 as ``\\xNN`` escapes."""
    if isinstance(value, bytes | bytearray | np.bytes_):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return str(value)


def names_from_array(raw: npt.NDArray[np.object_] | None, n: int) -> tuple[str, ...]:
    """``NAMES`` (BYTES ``[1, n]`` or ``(n,)``) as ``n`` strings (:func:`decode_name`).

    Raises:
        MalformedAnswerError: missing, or not ``n`` of them.
    """
    if raw is None:
        raise MalformedAnswerError(f"malformed answer: no {NAMES} output for {n} tracks")
    names = np.asarray(raw, dtype=np.object_).reshape(-1)
    if len(names) != n:
        raise MalformedAnswerError(f"malformed answer: {n} {OUTPUT_NAMES[0]} but {len(names)} {NAMES}")
    return tuple(decode_name(value) for value in names)


def answer_from_result(result: object, outputs: Sequence[str], restarted: bool = False) -> Answer:
    """An :class:`Answer` from an infer result (anything with ``as_numpy(name)``) and the identity
    ``outputs`` that were requested.

    Raises:
        MalformedAnswerError: the outputs disagree on the number of tracks.
    """
    as_numpy = result.as_numpy  # type: ignore[attr-defined]
    try:
        tracks = tracks_from_arrays(*(as_numpy(name) for name in OUTPUT_NAMES))
    except (ValueError, TypeError) as error:
        raise MalformedAnswerError(f"malformed answer: {error}") from error
    n = len(tracks)
    global_ids = global_ids_from_array(as_numpy(GLOBAL_IDS), n) if GLOBAL_IDS in outputs else None
    names = names_from_array(as_numpy(NAMES), n) if NAMES in outputs else None
    return Answer(tracks, restarted, global_ids, names)


def parse_headers(pairs: Sequence[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (``--header``) -> dict; header names are lower-cased as gRPC requires.

    Raises:
        ValueError: a pair without ``=`` or with an empty key.
    """
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        headers[key.strip().lower()] = value
    return headers


#: The gateway's key header, and where the client finds the inference key when none is given.
KEY_HEADER = "x-api-key"
KEY_ENV = "PIPELINE_INFERENCE_KEY"
KEY_REFUSED_STATUSES = ("StatusCode.UNAUTHENTICATED", "StatusCode.PERMISSION_DENIED")


def read_key(key_file: str | None, env: Mapping[str, str]) -> str | None:
    """The inference key: the ``inference=`` line of ``key_file`` (a gateway keys file) or its only line,
    else ``$PIPELINE_INFERENCE_KEY``; None when neither is set.

    Raises:
        ValueError: the file has no key.
    """
    if key_file is None:
        return env.get(KEY_ENV) or None
    with open(key_file) as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
    for line in lines:
        role, sep, value = line.partition("=")
        if sep and role.strip() == "inference":
            return value.strip()
    if len(lines) == 1 and not lines[0].startswith(("admin=", "metrics=")):
        return lines[0]
    raise ValueError(f"{key_file}: no inference=KEY line")


def key_headers(key: str | None, headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus ``x-api-key: key`` when a key is given (an explicit ``--header`` wins)."""
    out = dict(headers)
    if key:
        out.setdefault(KEY_HEADER, key)
    return out


def make_client(
    url: str, ssl: bool = False, root_cert: str | None = None
) -> grpcclient.InferenceServerClient:
    """A gRPC client, over TLS when ``ssl`` (``root_cert``: PEM of the CA to trust, else the system's)."""
    return grpcclient.InferenceServerClient(url, ssl=ssl, root_certificates=root_cert)


def check_ready(
    client: grpcclient.InferenceServerClient,
    model: str,
    timeout_s: float = 5.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Fail early when the server is unreachable, the model is not ready or the gateway refuses the key.

    The key is checked with a model-metadata call: a refused frame too large for the gateway's buffer
    only comes back as CANCELLED, a refused metadata call as UNAUTHENTICATED / PERMISSION_DENIED.

    Returns:
        The identity outputs the model has (:func:`identity_outputs`: ``()`` without ReID), for
        ``CameraStream(identity_outputs=...)``.

    Raises:
        ServerUnavailableError: with a message saying which.
    """
    headers = dict(headers) if headers else None
    try:
        server_ready = client.is_server_ready(headers=headers, client_timeout=timeout_s)
    except InferenceServerException as error:
        raise ServerUnavailableError(f"Triton server unreachable: {error.message()}") from error
    if not server_ready:
        raise ServerUnavailableError("Triton server is up but not ready")
    try:
        model_ready = client.is_model_ready(model, headers=headers, client_timeout=timeout_s)
    except InferenceServerException as error:
        raise ServerUnavailableError(
            f"cannot ask whether model {model!r} is ready: {error.message()}"
        ) from error
    if not model_ready:
        raise ServerUnavailableError(f"model {model!r} is not ready on the server")
    try:
        return read_identity_outputs(client, model, headers, timeout_s)
    except InferenceServerException as error:
        if error.status() in KEY_REFUSED_STATUSES:
            raise ServerUnavailableError(
                f"the server refused the key for {model!r}: {error.message()} "
                f"(give --key-file or ${KEY_ENV})"
            ) from error
        raise ServerUnavailableError(f"cannot read the metadata of {model!r}: {error.message()}") from error


class CameraStream:
    """One camera's sequence on the server: sends frames in order, handling START, END and restarts.

    Not thread-safe by design: one camera, one caller, one frame in flight (that is what keeps the
    camera's frames in order through the ensemble).

    Args:
        client: the gRPC client.
        camera_id: the sequence ID: an integer > 0 or a string (``cameras.check_camera_id``).
        model: the stateful ensemble to call.
        client_timeout_s: per-request deadline, None for none.
        headers: gRPC headers sent with every request; ``camera-id`` (the routing header) is always the
            stream's own.
        reconnect_s: how long to keep resending a frame while the server is unreachable (0: give up
            at once with ``ServerUnavailableError``).
        sleep: how to wait between reconnect attempts (tests pass a fake clock's).
        clock: monotonic seconds, for the reconnect deadline (tests pass a fake clock's).
        identity_outputs: which of ``GLOBAL_IDS``, ``NAMES`` to request (what :func:`check_ready`
            returned); None: read the model's metadata before the first frame.
        start_parameters: request parameters sent with every START (a restart's too), besides
            ``frame_index``: the camera's tracker settings (``frame_rate``, ``track_buffer``, ...).
    """

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        camera_id: CameraId,
        model: str = DEFAULT_MODEL,
        client_timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        reconnect_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        identity_outputs: Sequence[str] | None = None,
        start_parameters: Mapping[str, bool | int | float | str] | None = None,
    ) -> None:
        check_camera_id(camera_id)  # ValueError (InvalidInputError) for a bad id
        if reconnect_s < 0:
            raise ValueError(f"reconnect_s must be >= 0, got {reconnect_s}")
        self.client = client
        self.camera_id = camera_id
        self.model = model
        self.client_timeout_s = client_timeout_s
        self.headers = {**(headers or {}), ROUTING_HEADER: routing_value(camera_id)}
        self.reconnect_s = float(reconnect_s)
        self.sleep = sleep
        self.clock = clock
        self.restarts = 0
        self.reconnects = 0
        self.identity_outputs = None if identity_outputs is None else tuple(identity_outputs)
        self.start_parameters = dict(start_parameters or {})
        for name in (FRAME_INDEX, PREVIOUS_FRAME_INDEX):
            if name in self.start_parameters:
                raise ValueError(f"{name} is set by the stream, not a start parameter")
        self._started = False
        # The index of the camera's last frame the server took (answered, or failed past its checks);
        # a frame it refused (INVALID_ARG) was never tracked and leaves it as it was.
        self._previous: int | None = None

    def _read_identity_outputs(self) -> tuple[str, ...]:
        """The model's identity outputs, read from its metadata the first time.

        Raises:
            ServerUnavailableError: the metadata call failed (retriable when the server is down for now).
        """
        if self.identity_outputs is None:
            try:
                self.identity_outputs = read_identity_outputs(
                    self.client, self.model, self.headers, self.client_timeout_s
                )
            except InferenceServerException as error:
                raise ServerUnavailableError(
                    f"cannot read the metadata of {self.model!r}: {error.message()}", is_outage_error(error)
                ) from error
            LOGGER.debug("camera %s: %r has identity outputs %s", self.camera_id, self.model, self.identity_outputs)
        return self.identity_outputs

    def _index_parameters(self, start: bool, index: int) -> dict[str, int]:
        """``frame_index``, and ``previous_frame_index`` when the frame is not a START and follows a gap."""
        previous = self._previous
        gap = not start and previous is not None and index != previous + 1
        return {FRAME_INDEX: index, **({PREVIOUS_FRAME_INDEX: previous} if gap else {})}

    def _infer(self, jpeg: bytes, start: bool, end: bool, index: int) -> object:
        outputs = (*OUTPUT_NAMES, *(self.identity_outputs or ()))
        return self.client.infer(
            self.model,
            [image_input(jpeg)],
            outputs=[grpcclient.InferRequestedOutput(name) for name in outputs],
            sequence_id=self.camera_id,
            sequence_start=start,
            sequence_end=end,
            parameters={**(self.start_parameters if start else {}), **self._index_parameters(start, index)},
            client_timeout=self.client_timeout_s,
            headers={**self.headers, SEQUENCE_START_HEADER: "1"} if start else self.headers,
        )

    def send(self, jpeg: bytes, last: bool = False, index: int | None = None) -> tuple[Tracks, bool]:
        """Send one encoded frame and return ``(tracks, restarted)`` (:meth:`answer` without the identities).

        Raises:
            ServerUnavailableError, InferenceServerException, MalformedAnswerError, ValueError: as
                :meth:`answer`.
        """
        answer = self.answer(jpeg, last, index)
        return answer.tracks, answer.restarted

    def answer(self, jpeg: bytes, last: bool = False, index: int | None = None) -> Answer:
        """Send one encoded frame and return the server's answer, resending it while the server is unreachable.

        Args:
            jpeg: the encoded image.
            last: set ``sequence_end`` (the server frees the camera's state); the next frame starts anew.
            index: the frame's own ``frame_index`` (a caller that drops frames: its position in the
                source, gaps where frames were dropped); None: the next one without a gap.

        Returns:
            The tracks (with global ids and names when the model has them); ``restarted`` is True when
            the sequence had to be started again (after a reclaim or a server restart).

        Raises:
            ServerUnavailableError: the server could not be reached within ``reconnect_s``.
            InferenceServerException: any other failure of this frame (the camera may go on).
            MalformedAnswerError: the server's outputs disagree (the frame was tracked; the camera may go on).
            ValueError: ``index`` is not after the index of the camera's frame sent before (nothing sent).
        """
        if index is None:
            index = 0 if self._previous is None else self._previous + 1
        elif index < 0 or (self._previous is not None and index <= self._previous):
            raise ValueError(f"camera {self.camera_id}: frame_index {index} is not after {self._previous}")
        deadline = self.clock() + self.reconnect_s
        waits = backoff_waits(RECONNECT_FIRST_WAIT_S, RECONNECT_MAX_WAIT_S)
        while True:
            try:
                outputs = self._read_identity_outputs()  # nothing sent yet: a failure uses no frame index
                result, restarted = self._send_once(jpeg, last, index)
                self._previous = index
                return answer_from_result(result, outputs, restarted)
            except InferenceServerException as error:
                # A refused frame (INVALID_ARG) was not tracked: the next frame takes its index (or names
                # the frame before it as its previous), so the tracker does not wait reorder_wait_s for it.
                if error.status() != _INVALID_ARG:
                    self._previous = index
                raise
            except ServerUnavailableError as error:
                left = deadline - self.clock()
                if left <= 0 or not error.retriable or REFUSED_KEY_PHRASE in str(error):
                    raise
                wait = min(next(waits), left)
                LOGGER.warning("camera %s: %s; retrying in %.2f s", self.camera_id, error, wait)
                self.reconnects += 1
                self.sleep(wait)

    def _send_once(self, jpeg: bytes, last: bool, index: int) -> tuple[object, bool]:
        """Send one encoded frame once (with the restart rule) and return the infer result.

        Args:
            jpeg: the encoded image.
            last: set ``sequence_end`` (the server frees the camera's state); the next frame starts anew.
            index: the frame's ``frame_index``.

        Returns:
            ``(result, restarted)``; ``restarted`` is True when the sequence had to be started again.

        Raises:
            ServerUnavailableError: the server cannot be reached.
            InferenceServerException: any other failure of this frame (the camera may go on).
        """
        start = not self._started
        try:
            try:
                result = self._infer(jpeg, start, last, index)
                restarted = False
            except InferenceServerException as error:
                if start or not is_restart_error(error):
                    raise
                self.restarts += 1
                LOGGER.warning(
                    "camera %s: server lost the sequence (%s); starting a new one, track IDs restart at 1",
                    self.camera_id,
                    error.message(),
                )
                result = self._infer(jpeg, True, last, index)
                restarted = True
        except InferenceServerException as error:
            if error.status() == _UNAVAILABLE:
                raise ServerUnavailableError(f"Triton server unreachable: {error.message()}") from error
            if self.reconnect_s > 0 and is_outage_error(error):  # retried by ``send``
                raise ServerUnavailableError(f"Triton server model down: {error.message()}") from error
            # The server answered: a START it got counts (if it did not get it, the restart rule
            # recovers on the next frame), except one refused for capacity: nothing was kept of it.
            self._started = not last and reason_of(error.message() or "") is not Reason.CAPACITY
            raise
        self._started = not last
        return result, restarted


def send_frame(
    stream: CameraStream, index: int, jpeg: bytes, last: bool, frame_index: int | None = None
) -> FrameResult:
    """Send one frame, timing it; a frame the server rejects becomes a result with ``error`` set.
    ``frame_index``: the ``frame_index`` to send (:meth:`CameraStream.answer`'s ``index``); None: the
    stream's next one.

    Raises:
        ServerUnavailableError: the server cannot be reached (the camera should stop).
    """
    began = time.perf_counter()
    try:
        answer = stream.answer(jpeg, last, frame_index)
    except (InferenceServerException, MalformedAnswerError) as error:
        if isinstance(error, InferenceServerException):
            message = error.message()
        else:
            message = f"camera {stream.camera_id}: {error}"
        LOGGER.error("camera %s frame %d failed: %s", stream.camera_id, index + 1, message)
        return FrameResult(index, Tracks.empty(), time.perf_counter() - began, False, message)
    latency_s = time.perf_counter() - began
    return FrameResult(index, answer.tracks, latency_s, answer.restarted, None, answer.global_ids, answer.names)


def run_camera(
    client: grpcclient.InferenceServerClient,
    camera_id: CameraId,
    frames: Iterable[bytes | npt.NDArray[np.uint8]],
    model: str = DEFAULT_MODEL,
    jpeg_quality: int = 90,
    client_timeout_s: float | None = None,
    headers: Mapping[str, str] | None = None,
    reconnect_s: float = 0.0,
) -> list[FrameResult]:
    """Send a camera's frames in order, one in flight, START on the first and END on the last.

    Args:
        client: a gRPC client (one per thread when cameras run concurrently).
        camera_id: the sequence ID (an integer > 0 or a string).
        frames: encoded images (sent as they are) or BGR ``(H, W, 3)`` uint8 frames (JPEG-encoded).
        model: the stateful ensemble to call.
        jpeg_quality: JPEG quality for decoded frames.
        client_timeout_s: per-request deadline, None for none.
        headers: gRPC headers sent with every request (e.g. the server's restricted-protocol key).
        reconnect_s: how long to keep resending a frame while the server is unreachable (0: stop at once).

    Returns:
        One result per frame, in order.

    Raises:
        ServerUnavailableError: the server cannot be reached (within ``reconnect_s``).
    """
    stream = CameraStream(client, camera_id, model, client_timeout_s, headers, reconnect_s)
    results = []
    for index, (frame, last) in enumerate(with_last_flag(frames)):
        jpeg = frame if isinstance(frame, bytes) else encode_jpeg(frame, jpeg_quality)
        results.append(send_frame(stream, index, jpeg, last))
    return results
