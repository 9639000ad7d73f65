"""Are two runs' metrics identical step for step? `python bench/gpu/same_metrics.py RUN_A RUN_B` prints the first
step and key that differ (timings excluded: they are measurements of the machine, not of the run), exit 0 if none."""

import json
import sys
from pathlib import Path

MACHINE_KEYS = ("time/", "step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second",
                "/seconds")


def rows(run: str) -> list[dict]:
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not any(m in k for m in MACHINE_KEYS)} for line in lines]


def main(a: str, b: str) -> int:
    ra, rb = rows(a), rows(b)
    for i, (x, y) in enumerate(zip(ra, rb), start=1):
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                print(f"differ at line {i} (step {x.get('step')}) in {key}: {x.get(key)!r} vs {y.get(key)!r}")
                return 1
    print(f"identical: {min(len(ra), len(rb))} lines ({len(ra)} vs {len(rb)}), every metric but timings")
    return 0 if len(ra) == len(rb) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
