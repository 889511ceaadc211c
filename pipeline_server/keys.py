"""The gateway's client keys: an inference key, a separate admin key, an optional metrics key.

Keys come from a file (lines ``inference=...``, ``admin=...``, ``metrics=...``; ``#`` comments) that only its
owner may read, or from the environment (``PIPELINE_INFERENCE_KEY``, ``PIPELINE_ADMIN_KEY``,
``PIPELINE_METRICS_KEY``); never from a command line. ``make serve`` without either generates random keys
once into a 0600 file (``default_keys_file``). Key values never appear in a ``repr`` or a message.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_NAMES = {
    "inference": "PIPELINE_INFERENCE_KEY",
    "admin": "PIPELINE_ADMIN_KEY",
    "metrics": "PIPELINE_METRICS_KEY",
}
REQUIRED_ROLES = ("inference", "admin")
MIN_KEY_LENGTH = 16
# Header-safe and free of the separators HAProxy splits header values on (comma) or config quoting uses.
_KEY_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


class KeysError(ValueError):
    """Keys that cannot be used: a file others can read, a missing role, a malformed or reused key."""


@dataclass(frozen=True)
class ApiKeys:
    """The keys a client presents in ``x-api-key`` (values hidden from ``repr``).

    Attributes:
        inference: inference and metadata on the public models.
        admin: everything (repository load/unload, shared memory, trace, logging, statistics, metrics).
        metrics: ``/metrics`` only (e.g. for Prometheus); None: only the admin key reads metrics.
    """

    inference: str = field(repr=False)
    admin: str = field(repr=False)
    metrics: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for role, value in self.by_role().items():
            if len(value) < MIN_KEY_LENGTH or not _KEY_CHARS.match(value):
                raise KeysError(
                    f"the {role} key must be at least {MIN_KEY_LENGTH} characters of "
                    "A-Z a-z 0-9 . _ ~ + / = -"
                )
        values = list(self.by_role().values())
        if len(set(values)) != len(values):
            raise KeysError("the inference, admin and metrics keys must differ from each other")

    def by_role(self) -> dict[str, str]:
        """Role -> key, for the roles that have one."""
        roles = {"inference": self.inference, "admin": self.admin, "metrics": self.metrics}
        return {role: value for role, value in roles.items() if value is not None}


def key_digest(key: str) -> str:
    """Upper-case hex SHA-256 of a key: what the gateway compares (HAProxy ``sha2(256),hex``)."""
    return hashlib.sha256(key.encode()).hexdigest().upper()


def parse_keys(text: str, source: str = "keys file") -> ApiKeys:
    """Keys from ``role=value`` lines (blank lines and ``#`` comments ignored).

    Raises:
        KeysError: an unknown role, a repeated role, a line without ``=``, a missing role or a bad key.
    """
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        role, sep, value = line.partition("=")
        role = role.strip()
        if not sep:
            raise KeysError(f"{source} line {number}: expected role=key")
        if role not in ENV_NAMES:
            raise KeysError(
                f"{source} line {number}: unknown role {role!r} (expected {', '.join(ENV_NAMES)})"
            )
        if role in found:
            raise KeysError(f"{source} line {number}: {role} given twice")
        found[role] = value.strip()
    missing = [role for role in REQUIRED_ROLES if role not in found]
    if missing:
        raise KeysError(f"{source}: no {' and no '.join(missing)} key")
    return ApiKeys(**found)


def check_private(path: Path) -> None:
    """Refuses a file that its group or others may read or write.

    Raises:
        KeysError: the file is missing or too open.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeysError(f"keys file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeysError(
            f"keys file {path} is accessible by group or others (mode {mode & 0o777:o}): chmod 600 it"
        )


def load_keys_file(path: Path) -> ApiKeys:
    """The keys of a private keys file (see ``check_private`` and ``parse_keys``)."""
    check_private(path)
    return parse_keys(path.read_text(), f"keys file {path}")


def keys_from_env(env: Mapping[str, str]) -> ApiKeys | None:
    """The keys from ``PIPELINE_*_KEY`` variables; None when neither required one is set.

    Raises:
        KeysError: only one of the inference and admin keys is set, or a key is bad.
    """
    values = {role: env[name] for role, name in ENV_NAMES.items() if env.get(name)}
    if not values:
        return None
    missing = [ENV_NAMES[role] for role in REQUIRED_ROLES if role not in values]
    if missing:
        raise KeysError(f"{' and '.join(missing)} not set (set both keys, or use a keys file)")
    return ApiKeys(**values)


def generate_keys_file(path: Path, with_metrics: bool = False) -> ApiKeys:
    """Writes random inference and admin (and metrics) keys to a new 0600 file (refuses to overwrite one)."""
    metrics = secrets.token_urlsafe(32) if with_metrics else None
    keys = ApiKeys(inference=secrets.token_urlsafe(32), admin=secrets.token_urlsafe(32), metrics=metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Gateway keys generated by `make serve`; clients send one in the x-api-key header.\n")
        fh.write("".join(f"{role}={value}\n" for role, value in keys.by_role().items()))
    return keys


def resolve_keys(
    keys_file: Path | None, env: Mapping[str, str], default_file: Path | None = None
) -> tuple[ApiKeys, str]:
    """The keys to use and where they came from (a sentence without the values).

    Order: ``keys_file`` when given; else the environment; else ``default_file`` (read, or generated once).

    Raises:
        KeysError: no keys anywhere (and no ``default_file``), or the chosen source is bad.
    """
    if keys_file is not None:
        return load_keys_file(keys_file), f"keys file {keys_file}"
    keys = keys_from_env(env)
    if keys is not None:
        return keys, "environment (" + ", ".join(n for n in ENV_NAMES.values() if env.get(n)) + ")"
    if default_file is None:
        raise KeysError(f"no keys: give --keys-file or set {ENV_NAMES['inference']} and {ENV_NAMES['admin']}")
    if default_file.exists():
        return load_keys_file(default_file), f"keys file {default_file}"
    return generate_keys_file(default_file), f"keys file {default_file} (generated now)"


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline_server.keys --generate FILE [--metrics-key-file FILE]``: new random keys."""
    import argparse

    from pipeline_config.cli_help import DefaultsFormatter

    parser = argparse.ArgumentParser(
        description="generate gateway keys into a new 0600 file", formatter_class=DefaultsFormatter
    )
    parser.add_argument(
        "--generate", type=Path, required=True, help="keys file to create (refuses to overwrite)"
    )
    parser.add_argument("--metrics-key-file", type=Path, help="also a metrics key, alone in this 0600 file")
    args = parser.parse_args(argv)
    keys = generate_keys_file(args.generate, with_metrics=args.metrics_key_file is not None)
    if args.metrics_key_file is not None and keys.metrics:
        fd = os.open(args.metrics_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(keys.metrics)
    print(f"wrote {args.generate}" + (f" and {args.metrics_key_file}" if args.metrics_key_file else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
