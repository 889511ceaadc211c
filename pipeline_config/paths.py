"""Where the project keeps its generated and cached files (paths relative to the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PROFILE = "cpu"


def project_root() -> Path:
    """The checkout this package is installed from (editable install)."""
    return Path(__file__).resolve().parents[1]


def committed_repository() -> Path:
    """The committed ``model_repository/``: every profile's python ``model.py`` adapters plus the rendered
    ``cpu`` profile's ``config.pbtxt`` files. Not servable (it has models of other profiles)."""
    return project_root() / "model_repository"


def profile_repository(profile: str) -> Path:
    """Where ``pipeline_config.render`` writes a profile by default and where ``server`` looks for it."""
    return project_root() / "build" / "model_repository" / profile


def tritonserver_home() -> Path:
    """The standalone tritonserver install (``make setup``); ``$TRITONSERVER_HOME`` overrides it."""
    override = os.environ.get("TRITONSERVER_HOME")
    return Path(override) if override else project_root() / ".cache" / "tritonserver"


def haproxy_home() -> Path:
    """Debian's haproxy package unpacked by ``make setup`` (``usr/sbin/haproxy``); ``$HAPROXY_HOME`` overrides it."""
    override = os.environ.get("HAPROXY_HOME")
    return Path(override) if override else project_root() / ".cache" / "haproxy"
