#!/usr/bin/env bash
# The image's ENTRYPOINT: `python -m pipeline_server.server`, the same code `make serve` uses, so the
# container and the local launcher cannot drift apart. By default it supervises tritonserver (loopback only)
# and the HAProxy gateway in front of it; `--exec --no-gateway` instead replaces itself with tritonserver.
#
#   docker/entrypoint.sh [server.py options]     e.g. --repo /models --model-control explicit --keys-file F
#
# PIPELINE_PYTHON picks the interpreter (default python3: the image's, with numpy < 2; the python backend
# stub takes the same one from PATH). TRITONSERVER_HOME is the server install (/opt/tritonserver in the
# image). NVIDIA's own entrypoint (driver and CUDA compatibility checks) runs first when it exists.
set -euo pipefail
python=${PIPELINE_PYTHON:-python3}
nvidia=/opt/nvidia/nvidia_entrypoint.sh
if [[ -x "$nvidia" ]]; then
    exec "$nvidia" "$python" -m pipeline_server.server "$@"
fi
exec "$python" -m pipeline_server.server "$@"
