#!/usr/bin/env bash
# Install r1exp for a CUDA 13 GPU machine into the active Python environment: the pyproject extra `gpu` (vLLM 0.26.0,
# TRL 1.15.0, PEFT 0.21.0, Unsloth 2026.10.5 + unsloth_zoo, Hydra, W&B, ...), measured on an H200 with torch
# 2.11.0+cu130. The machine's torch is kept, never replaced: it is pinned to the installed version while pip resolves,
# so a requirement that wants another torch fails instead of downloading one.
#
#   bash scripts/install_gpu.sh                  # from the package index
#   bash scripts/install_gpu.sh --from DIR       # offline, from a bundle made by scripts/bundle_gpu.sh (--no-index)
#   bash scripts/install_gpu.sh --dev [...]      # with the test tools
#
# Then it imports vllm, trl, peft, unsloth, hydra and wandb, and says which one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=""; extras="gpu"
while [ $# -gt 0 ]; do
  case "$1" in
    --from) [ $# -ge 2 ] || { echo "install_gpu.sh: --from needs a folder (made by scripts/bundle_gpu.sh)" >&2; exit 2; }
            bundle="$2"; shift 2 ;;
    --dev) extras="gpu,dev,sweep"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install_gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
want_torch="${R1EXP_GPU_TORCH:-2.11.0}"   # the torch the GPU stack was measured with (the machine's own)
have_torch=$(python -c "from importlib.metadata import version; print(version('torch'))" 2>/dev/null || true)
if [ -z "$have_torch" ]; then
  echo "install_gpu.sh: no torch in this Python ($(command -v python)): the GPU stack uses the machine's torch $want_torch" \
       "(CUDA 13); activate the environment that has it (or a venv made with --system-site-packages)" >&2
  exit 2
fi
if [ "${have_torch%%+*}" != "$want_torch" ]; then
  echo "install_gpu.sh: this Python has torch $have_torch, the GPU stack needs torch $want_torch (CUDA 13) and this" \
       "script never replaces the machine's torch; on a CPU machine use scripts/install_cpu.sh" >&2
  exit 2
fi
if [ -n "$bundle" ]; then
  if [ ! -d "$bundle" ] || ! ls "$bundle"/*.whl >/dev/null 2>&1; then
    echo "install_gpu.sh: $bundle is not a bundle of wheels: make one with 'bash scripts/bundle_gpu.sh DIR' on a" \
         "machine with network and copy DIR here" >&2
    exit 2
  fi
fi
keep=$(mktemp); trap 'rm -f "$keep"' EXIT
echo "torch==$have_torch" > "$keep"
# vLLM 0.26.0 declares another torch than the machine's 2.11.0 (pip: "Cannot install torch==2.11.0 and vllm==0.26.0"),
# and Unsloth declares xformers, which this stack runs without: the stack measured on the H200 was installed without
# resolving (every wheel with --no-deps). From a bundle, that is what happens here: the bundle's wheels as they are,
# then r1exp itself. From the index, the extra resolves except vLLM and Unsloth, which go in without their declared
# dependencies. The import check below names anything missing.
if [ -n "$bundle" ]; then
  if [ -f "$bundle/left-to-machine.txt" ]; then
    echo "install_gpu.sh: from $bundle; the bundle leaves these to this machine (its torch $have_torch and what came with it):"
    sed 's/^/  /' "$bundle/left-to-machine.txt"
  fi
  python -m pip install -q --no-index --no-deps "$bundle"/*.whl
  python -m pip install -q --no-index --no-deps --no-build-isolation -e .
else
  mapfile -t resolved < <(python - <<'PY'
import tomllib
for req in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"]:
    print(("nodeps " if req.lower().startswith(("unsloth", "vllm")) else "resolve ") + req)
PY
  )
  plain=(); nodeps=()
  for line in "${resolved[@]}"; do
    case "$line" in nodeps\ *) nodeps+=("${line#nodeps }") ;; "resolve r1exp["*) ;; resolve\ *) plain+=("${line#resolve }") ;; esac
  done
  python -m pip install -q -c "$keep" -e ".[${extras/gpu/train}]" "${plain[@]}"
  python -m pip install -q -c "$keep" --no-deps "${nodeps[@]}"
fi
python - <<'PY'
import importlib, sys
failed = []
for name in ("torch", "vllm", "trl", "peft", "unsloth", "hydra", "wandb"):
    try:
        module = importlib.import_module(name)
        print(f"  {name:8s} {getattr(module, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001 - every failure is named below
        failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
if failed:
    print("install_gpu.sh: installed, but these do not import:\n  " + "\n  ".join(failed), file=sys.stderr)
    sys.exit(1)
print("r1exp GPU stack ready. vLLM's separate engine process hung on the H200: run with VLLM_ENABLE_V1_MULTIPROCESSING=0")
PY
