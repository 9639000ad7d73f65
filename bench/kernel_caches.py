"""The on-disk caches of GPU kernels that a run compiles the first time it runs on a machine, and what is in them.

    python bench/kernel_caches.py [--out caches.json]    # each cache: where, files, MiB (Triton: kernels by name)

A fresh machine has them empty: Triton's kernels (vLLM's LoRA and sampling kernels, Unsloth's), Inductor's, vLLM's
compile cache, FlashInfer's JIT builds, the CUDA driver's PTX cache. `bench/variants.py --cold-kernels LABEL` runs
that variant with every one of them pointed at an empty folder (`cold_env`), as on a machine that never compiled
them, while the rest of the machine stays warm (page cache, bytecode): the start-up those caches save, measured.
"""

from __future__ import annotations

import argparse
import collections
import getpass
import json
import os
from pathlib import Path

# name: (the environment variable that moves the cache, where it is without one)
CACHES = {
    "triton": ("TRITON_CACHE_DIR", "~/.triton/cache"),
    "inductor": ("TORCHINDUCTOR_CACHE_DIR", "/tmp/torchinductor_{user}"),
    "vllm": ("VLLM_CACHE_ROOT", "~/.cache/vllm"),
    "flashinfer": ("FLASHINFER_WORKSPACE_BASE", "~/.cache/flashinfer"),   # the variable names the folder above .cache
    "cuda": ("CUDA_CACHE_PATH", "~/.nv/ComputeCache"),
}


def cache_dir(name: str) -> Path:
    variable, default = CACHES[name]
    moved = os.environ.get(variable)
    if moved:
        return Path(moved) / ".cache" / "flashinfer" if name == "flashinfer" else Path(moved)
    return Path(os.path.expanduser(default.format(user=getpass.getuser())))


def cold_env(root: Path) -> dict:
    """Environment variables that point every kernel cache at a new folder under root."""
    return {variable: str(root / name) for name, (variable, _) in CACHES.items()}


def triton_kernels(folder: Path) -> dict[str, int]:
    """Compiled Triton kernels by name (one metadata file per compiled variant)."""
    names: collections.Counter = collections.Counter()
    for meta in folder.glob("*/*.json"):
        if meta.name.startswith("__grp__"):
            continue
        try:
            names[json.loads(meta.read_text()).get("name", meta.stem)] += 1
        except (OSError, ValueError):
            names[meta.stem] += 1
    return dict(names.most_common())


def summary() -> dict:
    out = {}
    for name in CACHES:
        folder = cache_dir(name)
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        entry = {"dir": str(folder), "files": len(files),
                 "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1)}
        if name == "triton" and files:
            entry["kernels"] = triton_kernels(folder)
        out[name] = entry
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="also write the summary here (JSON)")
    a = parser.parse_args(argv)
    result = summary()
    text = json.dumps(result, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
