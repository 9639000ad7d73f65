"""How long `python -m r1exp ... dry_run=true` takes, wall clock, as a user runs it (a fresh process each time).

    python bench/dry_run_time.py [-n 15] [--out bench/results/cpu/dry_run_time] [-- extra overrides]

Runs each command line N times (after one untimed warm-up run that fills the OS file cache), reports median and
p90 wall seconds, and writes <out>.json and <out>.md. Target (issue 3): median under 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "default": ["dry_run=true"],
    "qwen7b-unsloth-80GB": ["model=qwen7b", "loader=unsloth", "hardware.gpu_memory_gb=80", "dry_run=true"],
    "qwen7b-vllm-80GB": ["model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=80", "dry_run=true"],
    "bad-config (exit 2)": ["loader=unsloth", "engine=vllm", "loader.fast_inference=false", "trainer.num_generations=1",
                            "dry_run=true"],
}
TARGET_S = 2.0


def time_once(args: list[str]) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "r1exp", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="timed runs per command line")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cpu" / "dry_run_time"))
    parser.add_argument("extra", nargs="*", help="overrides added to every command line")
    a = parser.parse_args()
    rows = []
    for name, args in COMMANDS.items():
        args = args + a.extra
        time_once(args)  # warm-up: file cache, __pycache__
        runs = [time_once(args) for _ in range(a.n)]
        times = [t for t, _ in runs]
        rows.append({"name": name, "command": "python -m r1exp " + " ".join(args), "exit_codes": sorted({c for _, c in runs}),
                     "n": a.n, "median_s": round(statistics.median(times), 3), "p90_s": round(percentile(times, 0.9), 3),
                     "min_s": round(min(times), 3), "max_s": round(max(times), 3)})
        print(f"{name:22s} median {rows[-1]['median_s']:.2f} s  p90 {rows[-1]['p90_s']:.2f} s  exit {rows[-1]['exit_codes']}")
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d %H:%M"),
            "command": "python bench/dry_run_time.py " + " ".join(sys.argv[1:]), "target_median_s": TARGET_S}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# dry-run wall time ({meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, "
             f"load avg {meta['load_avg_1m']})", "", f"Command: `{meta['command']}` (a fresh process per run, "
             f"{a.n} timed runs after one warm-up). Target: median < {TARGET_S} s.", "",
             "| command line | exit | median s | p90 s | min s | max s |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r['command']}` | {','.join(map(str, r['exit_codes']))} | {r['median_s']:.2f} | {r['p90_s']:.2f} | "
              f"{r['min_s']:.2f} | {r['max_s']:.2f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    slow = [r["name"] for r in rows if r["median_s"] >= TARGET_S]
    print(f"wrote {out}.json and .md; " + (f"over target: {slow}" if slow else "all medians under target"))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
