"""Enrol, list and delete people, and search where a person was seen, through the server's ``people`` model.

    pipeline-people enrol --name NAME PHOTO [PHOTO...] [--box X1,Y1,X2,Y2 ...]
    pipeline-people list
    pipeline-people delete --name NAME
    pipeline-people search PHOTO [--top-k K]

The server needs ReID on with a durable store (``--set reid_model=... --set database_url=sqlite:///...``).
``people`` is not a public model: behind the gateway it takes the admin key (``--key-file`` with an
``admin=`` line, or ``$PIPELINE_ADMIN_KEY``), because enrolling, deleting and searching people are an
operator's acts, not a camera client's.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from pipeline_client.triton_client import KEY_HEADER, make_client, parse_headers
from pipeline_config.cli_help import DefaultsFormatter
from pipeline_server.server import DEFAULT_GRPC_PORT

MODEL = "people"
OUTPUTS = ("NAMES", "COUNTS", "BOXES", "CAMERAS", "TIMES", "GLOBAL_IDS", "SIMILARITIES")
ADMIN_KEY_ENV = "PIPELINE_ADMIN_KEY"


def _tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, *array.shape], dtype)
    tensor.set_data_from_numpy(array[np.newaxis])
    return tensor


def people_call(
    client: grpcclient.InferenceServerClient,
    command: str,
    name: str | None = None,
    photos: Sequence[bytes] = (),
    boxes: np.ndarray | None = None,
    top_k: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """One ``people`` request; every output without its batch dimension.

    Raises:
        InferenceServerException: the server refused it (the message starts with ``[reason]``).
    """
    inputs = [_tensor("COMMAND", np.array([command.encode()], dtype=np.object_), "BYTES")]
    if name is not None:
        inputs.append(_tensor("NAME", np.array([name.encode()], dtype=np.object_), "BYTES"))
    if photos:
        inputs.append(_tensor("IMAGES", np.array(list(photos), dtype=np.object_), "BYTES"))
    if boxes is not None:
        inputs.append(_tensor("BOXES", np.asarray(boxes, np.float32).reshape(-1, 4), "FP32"))
    if top_k is not None:
        inputs.append(_tensor("TOP_K", np.array([top_k], np.int32), "INT32"))
    result = client.infer(
        MODEL, inputs, outputs=[grpcclient.InferRequestedOutput(o) for o in OUTPUTS], headers=dict(headers or {})
    )
    return {o: result.as_numpy(o)[0] for o in OUTPUTS}


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``x1,y1,x2,y2`` in photo pixels."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x1,y1,x2,y2, got {text!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected x1,y1,x2,y2, got {text!r}")
    return values  # type: ignore[return-value]


def read_admin_key(key_file: str | None, env: Mapping[str, str]) -> str | None:
    """The admin key: the ``admin=`` line of ``key_file`` (or its only line), else ``$PIPELINE_ADMIN_KEY``."""
    if key_file is None:
        return env.get(ADMIN_KEY_ENV) or None
    lines = [ln.strip() for ln in Path(key_file).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for line in lines:
        role, sep, value = line.partition("=")
        if sep and role.strip() == "admin":
            return value.strip()
    if len(lines) == 1 and "=" not in lines[0]:
        return lines[0]
    raise ValueError(f"{key_file}: no admin=KEY line")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipeline-people", description=__doc__.split("\n")[0], formatter_class=DefaultsFormatter
    )
    parser.add_argument("--url", default=f"localhost:{DEFAULT_GRPC_PORT}", help="Triton gRPC endpoint host:port")
    parser.add_argument("--key-file", help=f"the gateway's admin key (an admin= line); default ${ADMIN_KEY_ENV}")
    parser.add_argument("--header", dest="headers", action="append", default=[], metavar="KEY=VALUE",
                        help="gRPC header sent with the request (repeatable)")
    parser.add_argument("--ssl", action="store_true", help="connect over TLS")
    parser.add_argument("--root-cert", help="PEM file of the CA that signed the server's certificate")
    commands = parser.add_subparsers(dest="command", required=True)
    enrol = commands.add_parser("enrol", help="enrol a person from photos (or add photos to an enrolled name)")
    enrol.add_argument("--name", required=True)
    enrol.add_argument("photos", nargs="+", type=Path, help="JPEG/PNG photos of the person")
    enrol.add_argument("--box", dest="boxes", action="append", type=parse_box, default=[],
                       help="the person's box x1,y1,x2,y2 in each photo (one per photo; default: the largest "
                       "person the detector finds)")
    commands.add_parser("list", help="list enrolled people")
    delete = commands.add_parser("delete", help="delete an enrolled person")
    delete.add_argument("--name", required=True)
    search = commands.add_parser("search", help="where and when the person in a photo was seen")
    search.add_argument("photo", type=Path)
    search.add_argument("--box", type=parse_box, help="the person's box x1,y1,x2,y2 (default: detected)")
    search.add_argument("--top-k", type=int, default=20)
    return parser.parse_args(argv)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def run(args: argparse.Namespace, client: grpcclient.InferenceServerClient, headers: Mapping[str, str]) -> str:
    """The command's answer as text."""
    if args.command == "list":
        out = people_call(client, "list", headers=headers)
        rows = [f"{n.decode()}\t{c} embeddings" for n, c in zip(out["NAMES"], out["COUNTS"], strict=True)]
        return "\n".join(rows) if rows else "nobody enrolled"
    if args.command == "delete":
        out = people_call(client, "delete", name=args.name, headers=headers)
        return f"deleted {out['NAMES'][0].decode()} ({out['COUNTS'][0]} embeddings)"
    if args.command == "enrol":
        if args.boxes and len(args.boxes) != len(args.photos):
            raise ValueError(f"{len(args.photos)} photos need {len(args.photos)} --box values, got {len(args.boxes)}")
        photos = [p.read_bytes() for p in args.photos]
        boxes = np.array(args.boxes, np.float32) if args.boxes else None
        out = people_call(client, "enrol", name=args.name, photos=photos, boxes=boxes, headers=headers)
        used = "; ".join(",".join(f"{v:.0f}" for v in b) for b in out["BOXES"])
        return f"enrolled {out['NAMES'][0].decode()} ({out['COUNTS'][0]} embeddings; boxes {used})"
    box = None if args.box is None else np.array([args.box], np.float32)
    out = people_call(client, "search", photos=[args.photo.read_bytes()], boxes=box, top_k=args.top_k,
                      headers=headers)
    rows = [
        f"{_when(t)}\tcamera {c.decode()}\tglobal id {g}\tsimilarity {s:.3f}"
        for c, t, g, s in zip(out["CAMERAS"], out["TIMES"], out["GLOBAL_IDS"], out["SIMILARITIES"], strict=True)
    ]
    return "\n".join(rows) if rows else "not seen"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        headers = parse_headers(args.headers)
        key = read_admin_key(args.key_file, os.environ)
        if key:
            headers.setdefault(KEY_HEADER, key)
        with make_client(args.url, args.ssl, args.root_cert) as client:
            print(run(args, client, headers))
    except (InferenceServerException, ValueError, OSError) as exc:
        print(f"pipeline-people {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
