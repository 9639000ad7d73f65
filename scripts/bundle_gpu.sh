#!/usr/bin/env bash
# Make an offline bundle of r1exp's GPU stack, on a machine WITH network, for a GPU machine or cluster WITHOUT it:
#
#   bash scripts/bundle_gpu.sh [DIR] [--python 3.12] [--dev] [--print]
#
# DIR (default .gpu/bundle, ignored by git) receives the wheels of the pyproject extra `gpu` (vLLM 0.26.0, TRL 1.15.0,
# PEFT 0.21.0, Unsloth 2026.10.5, Hydra, W&B, ...) and of everything they need, for CPython 3.12 (--python) on x86_64
# Linux, resolved by pip for that target (pip install --dry-run --report), minus xformers, torch and what torch requires: the
# GPU machine keeps its own torch 2.11.0 + CUDA 13 (never replaced). It also holds the build tools that install
# r1exp from its checkout, and BUNDLE.txt (what is in it, for which target). --dev adds the test tools. --print shows
# the pip commands instead of running them. Copy DIR and the r1exp checkout over, then, on the GPU machine:
#
#   bash scripts/install_gpu.sh --from DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=".gpu/bundle"; pyver="3.12"; extras="gpu"; show=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) pyver="$2"; shift 2 ;;
    --dev) extras="gpu,dev,sweep"; shift ;;
    --print) show=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "bundle_gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) dir="$1"; shift ;;
  esac
done
case "$pyver" in 3.1[0-9]) ;; *) echo "bundle_gpu.sh: --python takes a CPython version like 3.12, not '$pyver'" >&2; exit 2 ;; esac
abi="cp${pyver/./}"
# manylinux tags a CUDA 13 machine's glibc (>= 2.28) accepts, newest first, then the generic ones
platforms=""; for n in 35 34 31 28 27 26 24 17 12 5; do platforms="$platforms --platform manylinux_2_${n}_x86_64"; done
platforms="$platforms --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform any"
target="--only-binary=:all: --implementation cp --python-version $pyver --abi $abi --abi abi3 --abi none $platforms"
requirements="$dir/requirements.txt"

run() { if [ -n "$show" ]; then echo "+ $*"; else "$@"; fi; }

mkdir -p "$dir"
# 1. r1exp's requirements and the extra's, read from pyproject.toml (r1exp[train] expanded), plus the build tools
python3 - "$extras" > "$requirements" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
def expand(name, seen=()):
    for req in extras[name]:
        if req.startswith("r1exp["):
            for inner in req[6:-1].split(","):
                if inner not in seen:
                    yield from expand(inner, (*seen, name))
        else:
            yield req
# the machine keeps its torch (not bundled): vLLM 0.26.0 declares another torch than 2.11.0, so resolving with the
# extra's torch pin is impossible; the set resolves with vLLM's torch, which step 4 leaves out
wanted = [r for r in project["dependencies"] + [r for name in sys.argv[1].split(",") for r in expand(name)]
          if not r.replace(" ", "").startswith("torch==")]
print("\n".join(dict.fromkeys(wanted + ["setuptools>=68", "wheel"])))
PY
# 2. hydra-core's antlr4 runtime exists only as a source archive: its (pure Python) wheel is built here
run python3 -m pip wheel -q --no-deps -w "$dir" "antlr4-python3-runtime==4.9.*"
# 3. resolve the whole set for the target (nothing installed), 4. keep all but torch and torch's own requirements
run python3 -m pip install -q --dry-run --ignore-installed --target "$dir/.unused" $target --find-links "$dir" \
  --report "$dir/resolution.json" -r "$requirements"
if [ -n "$show" ]; then
  echo "+ python3 (keep every resolved name==version but torch and its requirements, and xformers) > $dir/wheels.txt"
  echo "+ python3 -m pip download -q --no-deps $target --find-links $dir -d $dir -r $dir/wheels.txt"
  exit 0
fi
python3 - "$dir/resolution.json" > "$dir/wheels.txt" <<'PY'
import json, re, sys
items = json.load(open(sys.argv[1]))["install"]
name = lambda s: re.split(r"[ ;<>=!~\[(]", s.strip(), 1)[0].lower().replace("_", "-")
meta = {name(i["metadata"]["name"]): i["metadata"] for i in items}
# xformers (Unsloth's declared dependency) is built for one torch; the measured stack runs without it
skip = {"torch", "xformers"} | {name(r) for r in meta.get("torch", {}).get("requires_dist", []) if "extra ==" not in r}
print("\n".join(f"{n}=={m['version']}" for n, m in sorted(meta.items()) if n not in skip))
print(f"left to the machine's torch: {', '.join(sorted(skip & set(meta)))}", file=sys.stderr)
PY
python3 -m pip download -q --no-deps $target --find-links "$dir" -d "$dir" -r "$dir/wheels.txt"
{
  echo "r1exp GPU bundle: extras [$extras] for CPython $pyver, x86_64 Linux, made $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "not included: torch and its requirements (the GPU machine's own), xformers; install: bash scripts/install_gpu.sh --from $dir"
  ls "$dir"/*.whl | xargs -n1 basename
} > "$dir/BUNDLE.txt"
echo "bundled $(ls "$dir"/*.whl | wc -l) wheels ($(du -sh "$dir" | cut -f1)) in $dir; on the GPU machine: bash scripts/install_gpu.sh --from $dir"
