"""tests/gpu needs torch and a CUDA device: collected only by `make test-gpu` (PIPELINE_GPU_TESTS=1)."""

import os

collect_ignore = [] if os.environ.get("PIPELINE_GPU_TESTS") == "1" else ["gpu"]
