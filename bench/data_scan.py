"""How long the whole-file data check (r1exp.data.scan) takes on a 100k-record jsonl file (GSM8K-sized records).

    python bench/data_scan.py [--rows 100000] [--repeat 3]

Writes the file to a temporary folder, scans it `--repeat` times (cache cleared each time) and prints the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from r1exp.config.compose import compose
from r1exp.data import scan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May. " * 3
        with path.open("w") as f:
            for i in range(a.rows):
                f.write(json.dumps({"question": f"{i}: {question}", "answer": str(i)}) + "\n")
        cfg = compose(["data=jsonl", f"data.path={path}"])
        times, cpu = [], []
        for _ in range(a.repeat):
            scan._scan.cache_clear()
            t0 = time.process_time()
            result = scan.scan(cfg.data)
            cpu.append(time.process_time() - t0)
            times.append(result.seconds)
        size = path.stat().st_size / 1e6
        print(f"scan of {result.records} records ({size:.0f} MB): median {statistics.median(times):.2f} s wall, "
              f"{statistics.median(cpu):.2f} s CPU (wall runs: {', '.join(f'{t:.2f}' for t in times)}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
