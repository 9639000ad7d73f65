"""metrics.jsonl: one JSON line per logged step of a run, and what a summary reads from it."""

from __future__ import annotations

import json
from pathlib import Path


METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, after_step: int) -> int:
    """Drop the lines logged after `after_step` (a resumed run repeats them from its checkpoint); how many."""
    rows = read_metrics(run_dir)
    keep = [r for r in rows if int(r.get("step", 0)) <= after_step]
    if len(keep) != len(rows):
        (Path(run_dir) / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in keep))
    return len(rows) - len(keep)


def step_rows(rows: list[dict]) -> list[dict]:
    """Per-step training rows (the ones with a reward), leaving out the end-of-training summary line."""
    return [r for r in rows if "reward" in r]


