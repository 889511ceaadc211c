"""The options every client command uses to reach the server (through the gateway), added and checked once."""

from __future__ import annotations

import argparse
import os

from pipeline_client.triton_client import DEFAULT_MODEL, key_headers, parse_headers, read_key


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--timeout``, ``--reconnect``, ``--jpeg-quality``, ``--header``, ``--key-file``,
    ``--ssl`` and ``--root-cert``; :func:`check_connection_arguments` validates them after parsing."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help="stateful ensemble to call")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request deadline in seconds")
    parser.add_argument(
        "--reconnect",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep resending a frame this long while the server is unreachable (a restarted server gets a "
        "new sequence: track IDs restart at 1); 0 stops the camera at once",
    )
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the frames sent")
    parser.add_argument(
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gRPC header sent with every request (repeatable)",
    )
    parser.add_argument(
        "--key-file",
        help="the gateway's inference key: a keys file (its inference= line) or a file holding just the key; "
        "default $PIPELINE_INFERENCE_KEY; sent as x-api-key",
    )
    parser.add_argument("--ssl", action="store_true", help="connect over TLS")
    parser.add_argument(
        "--root-cert", help="PEM file of the CA that signed the server's certificate (with --ssl)"
    )


def check_connection_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses bad connection options through ``parser.error``; ``args.headers`` becomes the header dict
    with the key added."""
    if not 1 <= args.jpeg_quality <= 100:
        parser.error("--jpeg-quality must be in 1..100")
    try:
        args.headers = parse_headers(args.headers)
    except ValueError as exc:
        parser.error(f"--header: {exc}")
    try:
        args.headers = key_headers(read_key(args.key_file, os.environ), args.headers)
    except (OSError, ValueError) as exc:
        parser.error(f"--key-file: {exc}")
    if args.reconnect < 0:
        parser.error("--reconnect must be >= 0")
    if args.root_cert and not args.ssl:
        parser.error("--root-cert needs --ssl")
