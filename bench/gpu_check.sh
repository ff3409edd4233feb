#!/bin/sh
# The GPU check in one command (bench/gpu_check.py): gradviz's CUDA paths against the CPU,
# then the benchmarks' ratios on the GPU. Exit status 0 passed, 1 a check failed, 3 no CUDA
# device (nothing run). Uses the repository's .venv when there is one.
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
[ -x "$here/../.venv/bin/python" ] && python="$here/../.venv/bin/python"
exec "$python" "$here/gpu_check.py" "$@"
