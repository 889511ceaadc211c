"""Where the project keeps its files: one rule, used by every package that needs a path.

The *project directory* is ``$PIPELINE_HOME``, or the current directory when it is unset: a checkout, or
a deployment directory laid out like one (``configs/``, ``model_repository/``; ``make setup`` fills
``.cache/``, the launchers write ``out/`` and ``build/``). The installed package holds code only, so the
same rule works editable or not: nothing is found relative to this file. ``$PIPELINE_MODELS_DIR``,
``$TRITONSERVER_HOME`` and ``$HAPROXY_HOME`` override single directories under ``.cache/``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PROFILE = "cpu"
HOME_ENV = "PIPELINE_HOME"
MODELS_DIR_ENV = "PIPELINE_MODELS_DIR"
#: Name of the embedded person detector (SSDLite-MobileNetV2, converted by ``make setup``).
EMBEDDED_DETECTOR = "ssdlite"


def project_root() -> Path:
    """The project directory: ``$PIPELINE_HOME``, or the current directory."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser().resolve() if home else Path.cwd()


def project_file(*parts: str, hint: str = "") -> Path:
    """``project_root() / parts``, which must exist.

    Raises:
        FileNotFoundError: naming the path, ``$PIPELINE_HOME`` and ``hint`` (e.g. the make target).
    """
    path = project_root().joinpath(*parts)
    if not path.exists():
        unset = f"the current directory (${HOME_ENV} is unset)"
        where = f"${HOME_ENV}" if os.environ.get(HOME_ENV) else unset
        raise FileNotFoundError(
            f"{path} not found: the project directory is {where}; set {HOME_ENV} to a checkout or a"
            f" directory laid out like one{f' ({hint})' if hint else ''}"
        )
    return path


def configs_dir() -> Path:
    """``configs/``: ``profiles.toml`` and the templates of every ``config.pbtxt`` and the gateway."""
    return project_file("configs")


def templates_dir() -> Path:
    """``configs/templates``."""
    return project_file("configs", "templates")


def committed_repository() -> Path:
    """The committed ``model_repository/``: every profile's python ``model.py`` adapters plus the rendered
    ``cpu`` profile's ``config.pbtxt`` files. Not servable (it has models of other profiles)."""
    return project_root() / "model_repository"


def profile_repository(profile: str) -> Path:
    """Where ``pipeline_config.render`` writes a profile by default and where ``server`` looks for it."""
    return project_root() / "build" / "model_repository" / profile


def cache_dir() -> Path:
    """``.cache/``: what ``make setup`` downloads and converts (not in git)."""
    return project_root() / ".cache"


def models_dir() -> Path:
    """Where converted models live: ``$PIPELINE_MODELS_DIR`` or ``.cache/models``."""
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override) if override else cache_dir() / "models"


def detector_model(model: str) -> Path:
    """``"ssdlite"`` (the embedded detector, in ``models_dir()``) or a path, as an existing file.

    Raises:
        FileNotFoundError: if the file is missing (for the embedded one: where it was looked for and how
            to make it).
    """
    if model != EMBEDDED_DETECTOR:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        return path
    path = models_dir() / f"{EMBEDDED_DETECTOR}.onnx"
    if not path.is_file():
        source = f"${MODELS_DIR_ENV}" if os.environ.get(MODELS_DIR_ENV) else f"${HOME_ENV}/.cache/models"
        raise FileNotFoundError(
            f"model not found: {path} (the embedded detector is looked for in {source}, ${HOME_ENV} default"
            f" the current directory; run `make setup` in a checkout to convert it)"
        )
    return path


def tritonserver_home() -> Path:
    """The standalone tritonserver install (``make setup``); ``$TRITONSERVER_HOME`` overrides it."""
    override = os.environ.get("TRITONSERVER_HOME")
    return Path(override) if override else cache_dir() / "tritonserver"


def haproxy_home() -> Path:
    """Debian's haproxy unpacked by ``make setup`` (``usr/sbin/haproxy``); ``$HAPROXY_HOME`` overrides it."""
    override = os.environ.get("HAPROXY_HOME")
    return Path(override) if override else cache_dir() / "haproxy"
