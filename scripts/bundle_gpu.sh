#!/usr/bin/env bash
# Make an offline bundle of r1exp's GPU stack, on a machine WITH network, for a GPU machine or cluster WITHOUT it:
#
#   bash scripts/bundle_gpu.sh [DIR] [--python 3.12] [--dev] [--resolve-only] [--print]
#
# DIR (default .gpu/bundle, ignored by git) receives the wheels of the pyproject extra `gpu` (vLLM 0.26.0, TRL 1.15.0,
# PEFT 0.21.0, Unsloth 2026.10.5, Hydra, W&B, ...) and of everything they need, for CPython 3.12 (--python) on x86_64
# Linux, resolved by pip for that target (pip install --dry-run --report). torch is left to the GPU machine (its own
# 2.11.0 + CUDA 13, never replaced): pip resolves against a stand-in torch wheel with no requirements, so torch's own
# CUDA requirements (nvidia-*, cuda-*, triton) are neither resolved nor bundled; xformers is left out too. BUNDLE.txt
# says what is in it, for which target, and what was left to the machine. --dev adds the test tools. --resolve-only
# stops after the resolution (DIR/wheels.txt, DIR/left-to-machine.txt; nothing downloaded). --print shows the pip
# commands instead of running them. Copy DIR and the r1exp checkout over, then, on the GPU machine:
#
#   bash scripts/install_gpu.sh --from DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=".gpu/bundle"; pyver="3.12"; extras="gpu"; show=""; resolve_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) pyver="$2"; shift 2 ;;
    --dev) extras="gpu,dev,sweep"; shift ;;
    --print) show=1; shift ;;
    --resolve-only) resolve_only=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
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
# 1. r1exp's requirements and the extra's, read from pyproject.toml (r1exp[train] expanded), plus the build tools;
#    the extra's torch pin is the torch the machine keeps (R1EXP_GPU_TORCH overrides it, as in install_gpu.sh)
torch=$(python3 - "$extras" "$requirements" <<'PY'
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
wanted = project["dependencies"] + [r for name in sys.argv[1].split(",") for r in expand(name)]
torch = [r.replace(" ", "")[len("torch=="):] for r in wanted if r.replace(" ", "").startswith("torch==")]
with open(sys.argv[2], "w") as out:   # torch is not asked for: the stand-in below answers for the machine's
    out.write("\n".join(dict.fromkeys([r for r in wanted if not r.replace(" ", "").startswith("torch")]
                                      + ["setuptools>=68", "wheel"])) + "\n")
print(torch[0] if torch else "2.11.0")
PY
)
torch="${R1EXP_GPU_TORCH:-$torch}"
stand_in="$dir/.resolve"   # not a bundle wheel: install_gpu.sh installs $dir/*.whl only
# 2. hydra-core's antlr4 runtime exists only as a source archive: its (pure Python) wheel is built here
run python3 -m pip wheel -q --no-deps -w "$dir" "antlr4-python3-runtime==4.9.*"
# 3. a stand-in torch wheel (the machine's torch, with no requirements) so that pip resolves everything else against
#    torch $torch without resolving torch's own CUDA requirements; then resolve the whole set for the target
if [ -n "$show" ]; then
  echo "+ python3 (write $stand_in/torch-$torch+machine-py3-none-any.whl: Name torch, Version $torch+machine, no requirements)"
else
  mkdir -p "$stand_in"
  python3 - "$stand_in" "$torch" <<'PY'
import base64, hashlib, sys, zipfile
folder, version = sys.argv[1], sys.argv[2] + "+machine"
info = f"torch-{version}.dist-info"
files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\nSummary: stand-in for the GPU "
                             "machine's own torch (bundle resolution only, never installed)\n",
         f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: r1exp bundle_gpu.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
digest = lambda text: base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
record = "".join(f"{name},sha256={digest(text)},{len(text.encode())}\n" for name, text in files.items())
with zipfile.ZipFile(f"{folder}/torch-{version}-py3-none-any.whl", "w") as whl:
    for name, text in {**files, f"{info}/RECORD": record + f"{info}/RECORD,,\n"}.items():
        whl.writestr(name, text)
PY
  echo "torch==$torch+machine" > "$stand_in/constraints.txt"
fi
run python3 -m pip install -q --dry-run --ignore-installed --target "$dir/.unused" $target --find-links "$dir" \
  --find-links "$stand_in" -c "$stand_in/constraints.txt" --report "$dir/resolution.json" -r "$requirements"
# 4. what torch $torch itself requires on Linux (its CUDA libraries and triton: the machine's, never bundled), read
#    from the index's metadata of torch alone, and of those pinned libraries (no resolution, no wheel downloaded)
run python3 -m pip install -q --dry-run --no-deps --ignore-installed --target "$dir/.unused" $target \
  --report "$stand_in/torch.json" "torch==$torch"
if [ -n "$show" ]; then
  echo "+ python3 (keep every resolved name==version but torch, what torch requires on Linux, and xformers) > $dir/wheels.txt"
  [ -n "$resolve_only" ] || echo "+ python3 -m pip download -q --no-deps $target --find-links $dir -d $dir -r $dir/wheels.txt"
  exit 0
fi
python3 - "$dir/resolution.json" "$stand_in/torch.json" "$torch" "$dir/wheels.txt" "$dir/left-to-machine.txt" \
  "$dir/.unused" $target <<'PY'
import json, re, subprocess, sys
resolution, torch_report, torch, wheels, left, target_dir = sys.argv[1:7]
target = sys.argv[7:]
name = lambda s: re.split(r"[ ;<>=!~\[(]", s.strip(), 1)[0].lower().replace("_", "-")
meta = {name(i["metadata"]["name"]): i["metadata"] for i in json.load(open(resolution))["install"]}
torch_reqs = [r for i in json.load(open(torch_report))["install"] for r in i["metadata"].get("requires_dist", [])]
linux = [r for r in torch_reqs if "extra ==" not in r and "platform_system" in r]
cuda = sorted({name(r) for r in linux})
# one level further: what those pinned CUDA packages bring (cuda-toolkit[cudart,...] -> nvidia-cuda-runtime, ...), so
# that no bundled wheel replaces a library the machine's torch was installed with
brought = set()
for req in (r.split(";")[0].strip() for r in linux if "==" in r):
    extras = set(re.findall(r"\[([^\]]*)\]", req)[0].split(",")) if "[" in req else set()
    found = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--no-deps", "--ignore-installed",
                            "--target", target_dir, *target, "--report", "-", req], capture_output=True, text=True)
    if found.returncode != 0:
        continue   # not on this index (the bundle never needed it)
    for item in json.loads(found.stdout or "{}").get("install", []):
        for r in item["metadata"].get("requires_dist") or []:
            extra = re.search(r"extra == ['\"]([^'\"]+)['\"]", r)
            if extra is None or extra.group(1) in extras:
                brought.add(name(r))
cuda = sorted(set(cuda) | {b for b in brought if b in meta and b.startswith(("nvidia-", "cuda-"))})
# xformers (Unsloth's declared dependency) is built for one torch; the measured stack runs without it
skip = {"torch", "xformers", *cuda}
wanted_by = lambda pkg: sorted(n for n, m in meta.items() if n not in skip
                              and any(name(r) == pkg and "extra ==" not in r for r in m.get("requires_dist") or []))
lines = [f"torch {torch} (the GPU machine's own build, CUDA 13; a stand-in answered for it while resolving)"]
lines += [f"{pkg} (torch {torch}'s CUDA build requires it: the machine's torch came with it)"
          + (f"; also wanted by {', '.join(wanted_by(pkg))}" if wanted_by(pkg) else "") for pkg in cuda]
if "xformers" in meta:
    lines.append(f"xformers (declared by {', '.join(wanted_by('xformers'))}; built for one torch, the measured stack "
                 "runs without it)")
open(wheels, "w").write("".join(f"{n}=={m['version']}\n" for n, m in sorted(meta.items()) if n not in skip))
open(left, "w").write("".join(f"{line}\n" for line in lines))
if not cuda:
    print(f"bundle_gpu.sh: torch {torch}'s own requirements could not be read; only torch and xformers are left out",
          file=sys.stderr)
PY
echo "resolved $(wc -l < "$dir/wheels.txt") packages for CPython $pyver, x86_64 Linux; left to the GPU machine:"
sed 's/^/  /' "$dir/left-to-machine.txt"
[ -z "$resolve_only" ] || { echo "resolution only: $dir/wheels.txt (nothing downloaded)"; exit 0; }
python3 -m pip download -q --no-deps $target --find-links "$dir" -d "$dir" -r "$dir/wheels.txt"
{
  echo "r1exp GPU bundle: extras [$extras] for CPython $pyver, x86_64 Linux, made $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "install: bash scripts/install_gpu.sh --from $dir   (on the GPU machine, in the environment that has its torch)"
  echo "left to the GPU machine (not in this bundle):"
  sed 's/^/  /' "$dir/left-to-machine.txt"
  echo "wheels:"
  ls "$dir"/*.whl | xargs -n1 basename | sed 's/^/  /'
} > "$dir/BUNDLE.txt"
echo "bundled $(ls "$dir"/*.whl | wc -l) wheels ($(du -sh "$dir" | cut -f1)) in $dir; on the GPU machine: bash scripts/install_gpu.sh --from $dir"
