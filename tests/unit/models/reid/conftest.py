from __future__ import annotations

import pytest

from pipeline_models.reid.embedder import Embedder
from tests.unit.models.reid.walkers import FIXTURE


@pytest.fixture(scope="package")
def osnet() -> Embedder:
    """The OSNet x0.25 fixture model, one thread; skipped where the shared fixtures are absent."""
    if not FIXTURE.is_file():
        pytest.skip(
            f"ReID test model absent ({FIXTURE}); it lives in the shared fixtures, not in the project"
        )
    return Embedder(FIXTURE, threads=1)
