"""Re-plan every H200 run under bench/results/h200/ with the current memory planner and set it next to the
measured peak (run.json "gpu_memory"). Writes bench/results/h200/memory.md.

    python bench/gpu/plan_vs_measured.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from r1exp.machine import Environment  # noqa: E402
from r1exp.config.plan import plan_memory  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "h200"


def rows():
    for run_json in sorted(RESULTS.glob("*/run.json")):
        run = json.loads(run_json.read_text())
        measured = (run.get("gpu_memory") or {}).get("gpu/peak_used_gb")
        if not measured:
            continue
        cfg = OmegaConf.create(run["config"])
        env = Environment(versions=run["versions"], gpus=(run["gpu_memory"]["gpu/device_total_gb"],))
        plan = plan_memory(cfg, env)
        yield run_json.parent.name, cfg, plan, measured, run.get("plan", {}).get("total_gb")


def main() -> None:
    lines = ["# Planned vs measured peak GPU memory (H200, one GPU)", "",
             "Measured: device-level peak (total - free, polled every 0.2 s during training) from each run.json.",
             "Planned: `plan_memory` of the current code on the run's saved config. Regenerate with",
             "`python bench/gpu/plan_vs_measured.py`.", "",
             "| run | loader | engine | measured GiB | planned GiB | error | plan when run |",
             "|---|---|---|---|---|---|---|"]
    for name, cfg, plan, measured, then in rows():
        err = 100 * (plan.total_gb - measured) / measured
        lines.append(f"| {name} | {cfg.loader.name} | {cfg.engine.name} | {measured:.1f} | {plan.total_gb:.1f} | "
                     f"{err:+.0f}% | {then:.1f} |" if then else f"| {name} | ... |")
    lines += ["", "unsloth_vllm ran before the loader passed the planned gpu_memory_utilization to Unsloth: Unsloth",
              "took its own default share, so its row is not a test of the plan."]
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
