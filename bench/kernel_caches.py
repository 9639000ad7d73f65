"""The on-disk caches of GPU kernels that a run compiles the first time it runs on a machine, and what is in them.

    python bench/kernel_caches.py [--root FOLDER] [--out caches.json]   # each cache: where, files, MiB (Triton:
                                                                          # kernels by name)

A fresh machine has them empty: Triton's kernels (vLLM's LoRA and sampling kernels, Unsloth's), Inductor's, vLLM's
compile cache, FlashInfer's JIT builds, the CUDA driver's PTX cache. Without --root: where the libraries keep them
(their environment variables, else their defaults); with --root: a `hardware.kernel_cache` folder
(r1exp/machine/kernel_cache.py). `bench/variants.py --cold-kernels LABEL` runs that variant with an empty
hardware.kernel_cache, as on a machine that never compiled them, while the rest of the machine stays warm (page
cache, bytecode), and keeps this summary of what it compiled.
"""

from __future__ import annotations

import argparse
import collections
import getpass
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1exp.machine.kernel_cache import CACHE_ENV, environment  # noqa: E402

DEFAULTS = {"triton": "~/.triton/cache", "inductor": "/tmp/torchinductor_{user}", "vllm": "~/.cache/vllm",
            "flashinfer": "~", "cuda": "~/.nv/ComputeCache"}


def cache_dirs(root: str | None = None) -> dict[str, Path]:
    """Each cache's folder: under `root` as hardware.kernel_cache lays them out, else the libraries' own."""
    env = environment(root) if root else os.environ
    out = {}
    for name, variable in CACHE_ENV.items():
        folder = Path(env.get(variable) or os.path.expanduser(DEFAULTS[name].format(user=getpass.getuser())))
        out[name] = folder / ".cache" / "flashinfer" if name == "flashinfer" else folder   # FlashInfer: its base
    return out


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


def summary(root: str | None = None) -> dict:
    out = {}
    for name, folder in cache_dirs(root).items():
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        entry = {"dir": str(folder), "files": len(files),
                 "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1)}
        if name == "triton" and files:
            entry["kernels"] = triton_kernels(folder)
        out[name] = entry
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="a hardware.kernel_cache folder (default: the libraries' own)")
    parser.add_argument("--out", default=None, help="also write the summary here (JSON)")
    a = parser.parse_args(argv)
    result = summary(a.root)
    text = json.dumps(result, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
