"""What the rewards cost: their share of a CPU training step on the default run, and seconds per 1000 completions.

    PYTHONPATH=. python bench/reward_cost.py [--steps 10] [--out bench/results/cpu]

1. Training: the default run (`python -m r1exp logger=none`, a few steps) with its rewards (accuracy, format), then
   with every library reward that fits the arithmetic data. Each logged step has `rewards/<label>/seconds` (the
   reward monitor) and `step_time` (TRL: generation + scoring + backward); the share is their ratio. The first step
   also pays one-off imports, so the summary gives the median over the later steps and the first step on its own.
2. Scoring alone: every library reward on 1024 completions shaped like the default run's (right, wrong, unformatted,
   long), countdown on countdown data: seconds per 1000 completions.
Writes reward_cost.json and reward_cost.md under --out. Target (issue 5): reward share < 5% of a step.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARITHMETIC_REWARDS = "accuracy,format,exact,numeric,tag_count,reasoning_steps,repetition,length,cosine,overlong"
RUNS = {"default rewards (accuracy, format)": [],
        "all arithmetic rewards (10)": [f"reward=[{ARITHMETIC_REWARDS}]"]}
TARGET_SHARE = 0.05


def train(overrides: list[str], steps: int, workdir: Path) -> list[dict]:
    run_dir = workdir / f"run{len(list(workdir.iterdir()))}"
    cmd = [sys.executable, "-m", "r1exp", "logger=none", f"trainer.max_steps={steps}", f"hydra.run.dir={run_dir}",
           *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("R1EXP_CACHE", str(ROOT / ".cache" / "r1exp"))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if "step_time" in row]


def shares(rows: list[dict]) -> dict:
    per_step = []
    for row in rows:
        seconds = {k.split("/")[1]: v for k, v in row.items() if k.startswith("rewards/") and k.endswith("/seconds")}
        per_step.append({"step": row["step"], "step_time": row["step_time"], "reward_seconds": sum(seconds.values()),
                         "share": sum(seconds.values()) / row["step_time"], "per_reward": seconds})
    later = per_step[1:] or per_step
    return {
        "steps": per_step,
        "median_share_after_first": statistics.median(s["share"] for s in later),
        "max_share_after_first": max(s["share"] for s in later),
        "first_step_share": per_step[0]["share"],
        "whole_run_share": sum(s["reward_seconds"] for s in per_step) / sum(s["step_time"] for s in per_step),
        "median_step_time_s": statistics.median(s["step_time"] for s in later),
        "median_reward_seconds": statistics.median(s["reward_seconds"] for s in later),
    }


def completions_for(rows: list[dict], n: int) -> tuple[list, dict]:
    """n completions cycling through right, wrong, unformatted, non-integer and long ones, with their columns."""
    shapes = [lambda r: f"<think>{r['answer']}</think><answer>{r['answer']}</answer>",
              lambda r: f"<think>so</think><answer>{r['answer']}1</answer>",
              lambda r: f"the answer is {r['answer']}",
              lambda r: f"<think>so</think><answer>{r['answer']}.5</answer>",   # not an integer: math-verify parses
              lambda r: "<think>" + "step by step " * 20 + f"</think><answer>{r['answer']}</answer>"]
    picked = [rows[i % len(rows)] for i in range(n)]
    completions = [[{"role": "assistant", "content": shapes[i % len(shapes)](r)}] for i, r in enumerate(picked)]
    columns = {k: [r[k] for r in picked] for k in picked[0] if k != "prompt"}
    columns["prompts"] = [r["prompt"] for r in picked]
    return completions, columns


def scoring(n: int = 1024) -> dict:
    from r1exp import data
    from r1exp.config.compose import compose
    from r1exp.rewards import bound_reward, mathcheck
    from r1exp.rewards.text import approximate_ids

    out = {}
    for data_name, names in (("arithmetic", ARITHMETIC_REWARDS), ("countdown", "countdown")):
        cfg = compose([f"data={data_name}", f"reward=[{names}]"])
        completions, columns = completions_for(data.rows(cfg.data, 256), n)
        ids = [approximate_ids(c[0]["content"]) for c in completions]
        for label, entry in cfg.reward.items():
            fn = bound_reward(entry)
            fn(completions=completions[:8], completion_ids=ids[:8], **{k: v[:8] for k, v in columns.items()})
            mathcheck.parsed.cache_clear()   # cold caches: every distinct answer is parsed again
            mathcheck._equal.cache_clear()
            start = time.perf_counter()
            fn(completions=completions, completion_ids=ids, **columns)
            out[f"{label} ({data_name})"] = (time.perf_counter() - start) / n * 1e6   # ms per 1000
    return out


def markdown(result: dict) -> str:
    lines = ["# Reward cost on the default run (CPU)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}", "",
             "## Share of a training step", "",
             "| rewards | steps | median step (s) | median reward time (s) | median share after step 1 | max share "
             "after step 1 | step 1 share | whole run |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["training"].items():
        lines.append(f"| {name} | {len(r['steps'])} | {r['median_step_time_s']:.3f} | {r['median_reward_seconds']:.5f} "
                     f"| {r['median_share_after_first']:.3%} | {r['max_share_after_first']:.3%} | "
                     f"{r['first_step_share']:.3%} | {r['whole_run_share']:.3%} |")
    lines += ["", f"Target: under {TARGET_SHARE:.0%} of a step: "
                  f"{'met' if result['target_met'] else 'NOT met'} (every step of every run).",
              "math-verify is imported when the rewards are built, so no step pays for it. Step times include "
              "generation, scoring and the backward pass (TRL's step_time).", "", "## Scoring alone (1024 completions: right, wrong, unformatted, non-integer, long; cold caches)", "",
              "| reward (data) | ms per 1000 completions |", "|---|---|"]
    for name, ms in result["scoring_ms_per_1000"].items():
        lines.append(f"| {name} | {ms:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        training = {name: shares(train(ov, args.steps, Path(tmp))) for name, ov in RUNS.items()}
    result = {
        "command": f"PYTHONPATH=. python bench/reward_cost.py --steps {args.steps}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "training": training,
        "scoring_ms_per_1000": scoring(),
        "target_share": TARGET_SHARE,
        "target_met": all(s["share"] < TARGET_SHARE for r in training.values() for s in r["steps"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reward_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "reward_cost.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
