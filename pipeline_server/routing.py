"""The gateway's rules for several tritonservers: each camera pinned to one, by its ``camera-id`` header.

Triton does not route sequences: every request of a camera must reach the server that holds its tracker
state. ``sequence_id`` sits inside the request body (protobuf or JSON), so the client also sends the camera
id as the header ``camera-id`` (``pipeline_models.cameras.routing_value``) and HAProxy hashes that:
``balance hdr(camera-id)`` with ``hash-type consistent`` (a server that goes or comes moves only its share
of the cameras). A stick table remembers where each camera went, so a server that comes back does not take
its old cameras back in the middle of their sequences (they would have to start again a second time); it
takes new cameras, and cameras whose entry expired (``route_expire_s`` without a frame). A dead server is
found by its failed connections at once (``retry-on conn-failure``, redispatched to the next server on the
ring) and by the health check (``/v2/health/ready`` on its HTTP port, which needs no key).

A bad ``camera-id`` (repeated, empty, longer than any camera id, not percent-encoded) is refused with
``[bad_request] camera-id: ...``. A request for a sequence model (``pipeline``) without one (a client of
its own) is routed by its client connection instead (``connection-<address>-<port>`` as the key): every
camera of that connection goes to one server, which tracks them correctly; only the spreading is lost, and a
reconnect may move them (one restart). Refusing it was weighed and rejected: HAProxy answers a gRPC request
before reading a body larger than its 16 KB buffer and then resets the stream, so the client would see
``CANCELLED`` (RST_STREAM), not the message, for any real frame; and round robin would scatter a camera's
frames over servers that do not hold its sequence. Stateless requests (``detect``, metadata, health)
without the header are balanced round robin.

With one server none of this is rendered: each value below is empty and its line dropped, so the config
is the one-server config as before. Weighed: HAProxy's ``balance hdr`` + ``hash-type consistent`` and stick tables, not a routing
service of our own (nginx OSS has no active health checks; Envoy is not packaged in Debian 12).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_models.cameras import MAX_ROUTING_VALUE_CHARS, ROUTING_HEADER, SEQUENCE_START_HEADER

#: A KServe v2 JSON request's ``"sequence_start": true`` (the parameter, as any JSON writer spaces it).
HTTP_START_PATTERN = "'\"sequence_start\"[[:space:]]*:[[:space:]]*true'"
#: What the camera-id header may hold: RFC 3986 unreserved characters and %XX (``routing_value``).
ROUTING_VALUE_PATTERN = "^([A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+$"
_ONE_SERVER = ""  # a line holding only an empty value is dropped (gateway.render_strict)


def _grpc_refusal(condition: str, message: str) -> str:
    return (
        "    http-request return status 200 content-type application/grpc hdr grpc-status 3 "
        f'hdr grpc-message "[bad_request] {message}" if {condition}'
    )


def _http_refusal(condition: str, message: str) -> str:
    return (
        "    http-request return status 400 content-type text/plain "
        f'string "[bad_request] {message}\\n" if {condition}'
    )


def _header_checks(refusal, missing: str) -> list[str]:
    """The refusals of a bad ``camera-id`` (repeated, empty, too long, not percent-encoded), and the
    fallback for a sequence-model inference without one (``missing``: the ACL condition of such a
    request): it is routed by its client connection (address and port)."""
    h = ROUTING_HEADER
    return [
        refusal(f"{{ req.fhdr_cnt({h}) gt 1 }}", f"{h}: one header per request, got several"),
        refusal(f"{{ req.fhdr_cnt({h}) eq 1 }} {{ req.fhdr({h}) -m len 0 }}", f"{h}: empty"),
        refusal(
            f"{{ req.fhdr({h}),length gt {MAX_ROUTING_VALUE_CHARS} }}",
            f"{h}: longer than {MAX_ROUTING_VALUE_CHARS} characters (a camera id is at most 128 UTF-8 bytes)",
        ),
        refusal(
            f"{{ req.fhdr_cnt({h}) eq 1 }} !{{ req.fhdr({h}) -m reg {ROUTING_VALUE_PATTERN} }}",
            f"{h}: not a percent-encoded camera id (letters, digits, . _ ~ - and percent escapes)",
        ),
        # No header (a client of its own): the client's connection stands in for the camera.
        (
            f"    http-request set-header {h} connection-%[src]-%[src_port] "
            f"if {missing} !{{ req.fhdr_cnt({h}) gt 0 }}"
        ),
    ]


def grpc_frontend_rules(servers: int, sequence_prefixes: Sequence[str]) -> str:
    """The gRPC frontend's ``camera-id`` refusals (trailers-only answers, INVALID_ARGUMENT).

    Args:
        servers: how many tritonservers the gateway balances.
        sequence_prefixes: ``grpc_model_prefix`` of every sequence model.
    """
    if servers == 1:
        return _ONE_SERVER
    acl = (
        "    acl sequence_infer path /inference.GRPCInferenceService/ModelInfer\n"
        f"    acl sequence_model req.body,bytes(5,66),hex -m beg {' '.join(sequence_prefixes)}"
    )
    return "\n".join([acl, *_header_checks(_grpc_refusal, "sequence_infer sequence_model")])


def http_frontend_rules(servers: int, sequence_models: Sequence[str]) -> str:
    """The HTTP frontend's ``camera-id`` refusals (400)."""
    if servers == 1:
        return _ONE_SERVER
    names = "|".join(sequence_models)
    acl = f"    acl sequence_infer path_reg ^/v2/models/({names})(/versions/[0-9]+)?/infer$"
    # An HTTP client marks a START in its JSON (KServe v2: "parameters": {"sequence_start": true}, first in
    # the body, before any binary tensor data): the gateway sets the sequence-start header the gRPC client
    # sends, so that a camera's new sequence over HTTP is routed by the ring too.
    start = (
        f"    http-request set-header {SEQUENCE_START_HEADER} 1 if post sequence_infer "
        f"!{{ req.fhdr({SEQUENCE_START_HEADER}) -m found }} {{ req.body -m reg {HTTP_START_PATTERN} }}"
    )
    checks = _header_checks(_http_refusal, "post sequence_infer")
    return "\n".join(["    option http-buffer-request", acl, *checks, start])


def backend_rules(servers: int, route_expire_s: float) -> str:
    """The gRPC and HTTP backends' balancing: consistent hash on ``camera-id``, remembered per camera."""
    if servers == 1:
        return _ONE_SERVER
    h = ROUTING_HEADER
    return "\n".join(
        [
            f"    balance hdr({h})",
            "    hash-type consistent sdbm avalanche",  # spread similar ids (cam-1, cam-2) over the ring
            f"    stick-table type string len {MAX_ROUTING_VALUE_CHARS} size 1m expire {route_expire_s:g}s",
            # A START (the client's sequence-start header) is routed by the hash, not the table, and
            # stored: a camera's new sequence goes where the ring says now, e.g. to a server that joined.
            f"    stick match req.fhdr({h}) unless {{ req.fhdr({SEQUENCE_START_HEADER}) -m found }}",
            f"    stick store-request req.fhdr({h})",
            "    retries 2",
            "    retry-on conn-failure",
            "    option redispatch 1",
            # More points per server on the hash ring than weight 1 gives: a dead server's cameras spread
            # over all the others instead of its neighbours on the ring.
            "    default-server weight 100",
        ]
    )


def metrics_frontend_rules(servers: int) -> str:
    """With several servers ``/metrics?server=K`` is tritonserver K's (0-based, as in servers.json) and
    ``/metrics`` alone is the gateway's own (HAProxy's exporter: which servers are up, their traffic)."""
    if servers == 1:
        return _ONE_SERVER
    known = " ".join(str(k) for k in range(servers))
    return "\n".join(
        [
            (
                f'    http-request return status 404 content-type text/plain string "no server with that '
                f'number: /metrics?server=K with K in 0..{servers - 1}\\n" '
                f"if {{ urlp(server) -m found }} !{{ urlp(server) -m str {known} }}"
            ),
            "    http-request use-service prometheus-exporter if !{ urlp(server) -m found }",
        ]
    )


def metrics_backend_rules(servers: int, names: Sequence[str] | None = None) -> str:
    """``/metrics?server=K`` goes to server K (named ``names[K]``, default ``tritonK``), also when it is
    down (then the answer is 503, not another server's figures)."""
    if servers == 1:
        return _ONE_SERVER
    names = names or [f"triton{k}" for k in range(servers)]
    lines = [f"    use-server {names[k]} if {{ urlp(server) -m str {k} }}" for k in range(servers)]
    return "\n".join([*lines, "    force-persist if { urlp(server) -m found }"])
