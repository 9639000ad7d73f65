"""What importing the training stack costs when Python cannot reuse compiled bytecode, side by side.

    python bench/bytecode_imports.py [--repeats 3] [--modules torch,transformers,trl,vllm] [--out FILE.json]

Each repeat runs, in fresh processes and alternating: the import as installed, with the bytecode caches as they are
(`cached` in the JSON: what pip compiled at install, or what an earlier import wrote; none where the packages have no
bytecode and Python may not write it), and the same import compiling every module from source
(PYTHONPYCACHEPREFIX pointing at an empty folder and PYTHONDONTWRITEBYTECODE=1: what every run pays where the
packages were installed without bytecode, e.g. `pip install --no-compile`, and nothing may be written next to them).
Prints the medians and their ratio; `--out` keeps every sample. r1exp's `machine.bytecode` check warns when a run
would pay the second (r1exp/machine/bytecode.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def timed_import(modules: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import " + ", ".join(modules)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modules", default="torch,transformers,trl,vllm")
    parser.add_argument("--out", default=None)
    a = parser.parse_args(argv)
    modules = [m for m in a.modules.split(",") if m]
    warm_env = dict(os.environ)
    timed_import(modules, warm_env)             # the first import may write bytecode: not a sample
    samples = {"cached": [], "from_source": []}
    for _ in range(a.repeats):
        samples["cached"].append(timed_import(modules, warm_env))
        with tempfile.TemporaryDirectory() as empty:
            cold_env = {**os.environ, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
            samples["from_source"].append(timed_import(modules, cold_env))
    cached, source = statistics.median(samples["cached"]), statistics.median(samples["from_source"])
    result = {"modules": modules, "repeats": a.repeats, "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
              "python": platform.python_version(), "median_cached_s": round(cached, 3),
              "median_from_source_s": round(source, 3), "from_source_over_cached": round(source / cached, 2),
              "samples_s": {k: [round(v, 3) for v in vs] for k, vs in samples.items()}}
    print(f"import {', '.join(modules)}: {cached:.2f} s as installed, {source:.2f} s compiling from source "
          f"({source / cached:.2f}x, +{source - cached:.1f} s per run)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
