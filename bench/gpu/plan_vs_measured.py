"""Re-plan every H200 run under bench/results/h200/ with the current memory planner and set it next to the
measured peak (run.json "gpu_memory"). Writes bench/results/h200/memory.md; tests/test_memory_calibration.py
imports `rows()` and `render()` from here.

    python bench/gpu/plan_vs_measured.py
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from r1exp.components import shipped_options  # noqa: E402
from r1exp.config.plan import plan_memory, trainer_value  # noqa: E402
from r1exp.machine import Environment  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "h200"
MEMORY_MD = RESULTS / "memory.md"
SETS = ("fit", "held-out")

# Runs that measured something other than the plan, by path relative to RESULTS.
EXCLUDED = {
    "unsloth_vllm": "ran before the loader passed the planned gpu_memory_utilization to Unsloth: Unsloth took its "
                    "own share",
    "unsloth_vllm_env_vars": "Unsloth's env vars set by hand, standby among them: Unsloth picks its own memory "
                             "fraction (its vLLM log: 0.497 of the GPU)",
}


@dataclass(frozen=True)
class Row:
    run: str                 # run folder relative to bench/results/h200
    set: str                 # fit | held-out | excluded
    reason: str              # why excluded ("" otherwise)
    loader: str
    engine: str
    model: str
    shape: str               # per-device batch x max completion length
    grad_ckpt: bool
    measured_gb: float       # run.json gpu_memory["gpu/peak_used_gb"]
    planned_gb: float        # plan_memory of the current code
    then_gb: float | None    # run.json plan.total_gb (the plan when it ran)

    @property
    def error(self) -> float:
        return (self.planned_gb - self.measured_gb) / self.measured_gb


def run_files() -> list[Path]:
    return sorted(RESULTS.rglob("run.json"))


def peak(run: dict) -> float | None:
    return (run.get("gpu_memory") or {}).get("gpu/peak_used_gb")


def set_of(rel: str) -> str:
    """fit: a run folder directly under h200/ (ACT_FACTOR was fitted on these); held-out: any deeper folder
    (session3/, session4/, floor_q05/runs/: all run after the calibration)."""
    return "fit" if "/" not in rel else "held-out"


def exclusion(rel: str, run: dict, folder: Path) -> str:
    metrics = folder / "metrics.jsonl"
    steps = sum("loss" in json.loads(line) for line in metrics.read_text().splitlines() if line.strip()) \
        if metrics.exists() else None
    if rel in EXCLUDED:
        return EXCLUDED[rel]
    if run.get("status") != "ok":
        return f"status {run.get('status')!r}, not 'ok' ({steps} training steps logged)"
    if steps == 0:
        return "no training step in metrics.jsonl (the peak of a run that failed early)"
    return ""


def with_targets(config: dict) -> dict:
    """Configs saved before engines and loaders were chosen by `_target_` (r1exp.components): the shipped YAML of
    the same name, with the saved values of the keys it still has."""
    for group in ("engine", "loader"):
        node = config[group]
        if "_target_" not in node:
            shipped = OmegaConf.to_container(shipped_options(group)[node["name"]])
            config[group] = {**shipped, **{k: v for k, v in node.items() if k in shipped}}
    return config


def model_label(cfg) -> str:
    name = cfg.model.get("name")
    return str(name) if name else f"{cfg.model.arch.family} {float(cfg.model.arch.params) / 1e9:.2f}B"


def rows():
    """One Row per committed H200 run.json that has a measured peak."""
    for run_json in run_files():
        run = json.loads(run_json.read_text())
        measured = peak(run)
        if not measured:
            continue
        rel = run_json.parent.relative_to(RESULTS).as_posix()
        reason = exclusion(rel, run, run_json.parent)
        cfg = OmegaConf.create(with_targets(run["config"]))
        env = Environment(versions=run["versions"], gpus=(run["gpu_memory"]["gpu/device_total_gb"],))
        plan = plan_memory(cfg, env)
        batch = trainer_value(cfg, "per_device_train_batch_size", 8)
        length = trainer_value(cfg, "max_completion_length")
        yield Row(rel, "excluded" if reason else set_of(rel), reason, cfg.loader.name, cfg.engine.name,
                  model_label(cfg), f"{batch} x {length}",
                  bool(trainer_value(cfg, "gradient_checkpointing", True)), float(measured), plan.total_gb,
                  (run.get("plan") or {}).get("total_gb"))


def no_peak() -> list[str]:
    return [p.parent.relative_to(RESULTS).as_posix() for p in run_files() if not peak(json.loads(p.read_text()))]


def render(all_rows: list[Row] | None = None) -> str:
    all_rows = list(rows()) if all_rows is None else all_rows
    table = sorted((r for r in all_rows if r.set in SETS), key=lambda r: (SETS.index(r.set), r.run))
    lines = [
        "# Planned vs measured peak GPU memory (H200, one GPU)", "",
        "Measured: device-level peak (total - free, polled every 0.2 s during training) from each run.json.",
        "Planned: `plan_memory` of the current code on the run's saved config (configs saved before `_target_` get",
        "the shipped engine/loader YAML of the same name). Error = (planned - measured) / measured.", "",
        "Sets: **fit** = runs directly under bench/results/h200/ (ACT_FACTOR in r1exp/config/plan.py was fitted on",
        "these); **held-out** = runs in deeper folders (session3/, session4/, floor_q05/runs/), run after the",
        "calibration and never used to fit it; **excluded** = not a test of the plan: named below, or run.json",
        "status not \"ok\", or a metrics.jsonl without a training step (a peak of a run that failed early).", "",
        "Regenerate with `python bench/gpu/plan_vs_measured.py`; tests/test_memory_calibration.py checks this file",
        "is current and holds each row to its bound.", "",
        "| run | set | loader | engine | model | batch x completion | grad ckpt | measured GiB | planned GiB "
        "| fit error | held-out error | plan when run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        err = f"{100 * r.error:+.1f}%"
        lines.append(f"| {r.run} | {r.set} | {r.loader} | {r.engine} | {r.model} | {r.shape} | "
                     f"{'on' if r.grad_ckpt else 'off'} | {r.measured_gb:.2f} | {r.planned_gb:.2f} | "
                     f"{err if r.set == 'fit' else ''} | {err if r.set == 'held-out' else ''} | "
                     f"{'' if r.then_gb is None else f'{r.then_gb:.2f}'} |")
    lines += ["", "| set | rows | mean error | max abs error | within ±10% |", "|---|---|---|---|---|"]
    for name in SETS:
        errs = [r.error for r in table if r.set == name]
        if errs:
            lines.append(f"| {name} | {len(errs)} | {100 * sum(errs) / len(errs):+.1f}% | "
                         f"{100 * max(map(abs, errs)):.1f}% | {sum(abs(e) <= 0.10 for e in errs)}/{len(errs)} |")
    lines += ["", "Held-out misses: every held-out row is an under-prediction. PEFT rows: within -13% (7B + hf "
              "generate the worst, as in the fit set); the training part (peak - used before training) is 1.2-1.4x "
              "the plan's activations + log-prob head + LoRA terms. Unsloth + vLLM rows of session 4 (after the "
              "engine got the planned length through max_seq_length): 8-11 GiB above the plan at every size "
              "(-15% to -46%); a float32 logits buffer of the micro-batch (64 x 257 x 151,936 x 4 B = 9.3 GiB) would "
              "explain it, but the fit set's 7B Unsloth run (max_seq_length 2048) did not show it. Not modelled yet "
              "(tests/test_memory_calibration.py lists them as known misses)."]
    lines += ["", "Excluded (a peak, but not a test of the plan):", ""]
    lines += [f"- {r.run} (measured {r.measured_gb:.2f}, planned {r.planned_gb:.2f}): {r.reason}"
              for r in sorted(all_rows, key=lambda r: r.run) if r.set == "excluded"]
    lines += ["", "Not counted (run.json without a measured peak): " + ", ".join(no_peak()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = render()
    MEMORY_MD.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
