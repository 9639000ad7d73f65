"""metrics.jsonl: one JSON line per logged step of a run, and what a summary reads from it."""

from __future__ import annotations

import json
from pathlib import Path


METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of metrics.jsonl; a line cut short (a process killed while writing it) is left out."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, after_step: int) -> int:
    """Drop the lines logged after `after_step` (a resumed run repeats them from its checkpoint), and the interrupted
    attempt's end-of-training line (train_runtime: it would stand in the middle of the resumed run's); how many."""
    rows = read_metrics(run_dir)
    keep = [r for r in rows if int(r.get("step", 0)) <= after_step and "train_runtime" not in r]
    if len(keep) != len(rows):
        (Path(run_dir) / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in keep))
    return len(rows) - len(keep)


def step_rows(rows: list[dict]) -> list[dict]:
    """Per-step training rows (the ones with a reward), leaving out the end-of-training summary line."""
    return [r for r in rows if "reward" in r]


