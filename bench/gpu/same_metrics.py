"""Are two runs' metrics identical step for step? `python bench/gpu/same_metrics.py RUN_A RUN_B` prints the first
step and key that differ (what measures the machine, not the run, is left out: r1exp.records.verdict.VOLATILE, the keys the
reproduce verdict never compares), exit 0 if none."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from r1exp.records.verdict import VOLATILE  # noqa: E402


def rows(run: str) -> list[dict]:
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not VOLATILE.search(k)} for line in lines]


def main(a: str, b: str) -> int:
    ra, rb = rows(a), rows(b)
    for i, (x, y) in enumerate(zip(ra, rb), start=1):
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                print(f"differ at line {i} (step {x.get('step')}) in {key}: {x.get(key)!r} vs {y.get(key)!r}")
                return 1
    print(f"identical: {min(len(ra), len(rb))} lines ({len(ra)} vs {len(rb)}), every metric but the machine's")
    return 0 if len(ra) == len(rb) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
