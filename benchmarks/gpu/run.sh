#!/usr/bin/env bash
# Every GPU measurement, one command (benchmarks/gpu/README.md):
#   benchmarks/gpu/run.sh [--out DIR]        on one H100/H200-class GPU
#   benchmarks/gpu/run.sh --smoke --out DIR  the same script on a CPU
# PYTHON defaults to the machine's python3; wheels in .whl/ (if any) are
# installed to /tmp/site first, for images that lack a package.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$PYTHON" benchmarks/gpu/gpu_bench.py "$@"
