"""tests/gpu needs torch and a CUDA device: collected only by `make test-gpu` (PIPELINE_GPU_TESTS=1).
tests/faults is slow (real launchers killed and signalled): collected only by `make test-faults`
(PIPELINE_FAULT_TESTS=1), so `make test` does not run it."""

import os

collect_ignore = [] if os.environ.get("PIPELINE_GPU_TESTS") == "1" else ["gpu"]
if os.environ.get("PIPELINE_FAULT_TESTS") != "1":
    collect_ignore.append("faults")
