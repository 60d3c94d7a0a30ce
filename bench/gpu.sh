#!/usr/bin/env bash
# The training benchmarks on a CUDA GPU, in one short run (about 5 minutes on an H100). Usage, from the
# repository root on a machine with a GPU and the project's venv:  bash bench/gpu.sh [python]
# Prints the card, then bench/train_step.py eager and with torch.compile (SciSR uses bf16 autocast there,
# the BasicSR-style anchor fp32 NCHW; the --formats row times SciSR's generator in NCHW too, the per-arch
# choice of scisr.train.speed). Record the output in bench/README.md ("GPU").
set -euo pipefail
PY=${1:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
timeout 240 "$PY" bench/train_step.py --device cuda --pairs 10 --formats
timeout 240 "$PY" bench/train_step.py --device cuda --pairs 10 --compile --no-plain --no-rss
