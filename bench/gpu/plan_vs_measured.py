"""Re-plan every GPU run committed under bench/results/gpu/ with the current memory planner and set it next to the
measured peak (run.json "gpu_memory"). Writes bench/results/gpu/memory_plan.md; tests/test_memory_calibration.py
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
from r1exp.components import plan_for  # noqa: E402
from r1exp.plan.memory import trainer_value  # noqa: E402
from r1exp.machine.facts import Environment  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gpu"
MEMORY_MD = RESULTS / "memory_plan.md"
SETS = ("fit", "held-out")

# Runs that measured something other than the plan, by path relative to RESULTS.
EXCLUDED = {
    "unsloth_compile/no_env_vars": "ran before the loader passed the planned gpu_memory_utilization to Unsloth: "
                                   "Unsloth took its own share",
    "unsloth_compile/env_vars": "Unsloth's env vars set by hand, standby among them: Unsloth picks its own memory "
                                "fraction (its vLLM log: 0.497 of the GPU)",
}


@dataclass(frozen=True)
class Row:
    run: str                 # run folder relative to bench/results/gpu
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


# The runs the planner's constants were fitted on: ACT_FACTOR (r1exp/plan/memory.py) on the PEFT runs of
# memory_plan/fit/, Unsloth's own terms (r1exp/loaders/unsloth_loader.py, adjust_terms) on its Unsloth runs, and the
# factor of the recomputed-logits backward on the Unsloth runs of unsloth_logits/.
FIT = "memory_plan/fit/"
UNSLOTH_FIT = "unsloth_logits/"


def set_of(rel: str, loader: str) -> str:
    """fit: a run the constants were fitted on (FIT, UNSLOTH_FIT); held-out: any other (run after the calibration)."""
    if rel.startswith(FIT) or loader == "unsloth" and rel.startswith(UNSLOTH_FIT):
        return "fit"
    return "held-out"


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


# Keys added to a shipped engine or loader after runs were committed without them: the value that describes how
# those runs ran (the shipped default may be a behaviour they did not have).
ADDED_SINCE = {
    ("loader", "unsloth", "recompute_logits"): False,   # before it, Unsloth's loss held its logits
}


def with_targets(config: dict) -> dict:
    """A saved engine or loader as the current code reads it: the shipped YAML of the same name, with the saved
    values of the keys it still has (configs saved before `_target_`, r1exp.components, have none; a key removed
    since, such as the short-lived loader.logit_chunk_rows, is dropped; a key added since takes its ADDED_SINCE
    value)."""
    for group in ("engine", "loader"):
        node = config[group]
        shipped = OmegaConf.to_container(shipped_options(group)[node["name"]])
        added = {key: value for (g, name, key), value in ADDED_SINCE.items()
                 if g == group and name == node["name"] and key not in node}
        config[group] = {**shipped, **added, **{k: v for k, v in node.items() if k in shipped and k != "_target_"}}
    return config


def as_it_ran(config: dict, run: dict) -> dict:
    """Runs made before the engine got an explicit KV cache on a GPU (run.json's plan has no `kv_cache_gb`) ran with
    the memory fraction their plan recorded, and vLLM sized the KV cache from it: re-plan them with that fraction
    (engine.gpu_memory_utilization=<recorded>), not with today's auto."""
    plan = run.get("plan") or {}
    engine = config["engine"]
    if ("kv_cache_gb" not in plan and plan.get("gpu_memory_utilization") is not None
            and engine.get("gpu_memory_utilization") in ("auto", None) and engine.get("kv_cache_gb") is None):
        config["engine"] = {**engine, "gpu_memory_utilization": float(plan["gpu_memory_utilization"])}
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
        cfg = OmegaConf.create(as_it_ran(with_targets(run["config"]), run))
        env = Environment(versions=run["versions"], gpus=(run["gpu_memory"]["gpu/device_total_gb"],))
        plan = plan_for(cfg, env)
        batch = trainer_value(cfg, "per_device_train_batch_size", 8)
        length = trainer_value(cfg, "max_completion_length")
        yield Row(rel, "excluded" if reason else set_of(rel, cfg.loader.name), reason, cfg.loader.name, cfg.engine.name,
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
        "the shipped engine/loader YAML of the same name; runs made before the engine's explicit KV cache are",
        "re-planned with the memory fraction their plan recorded, which sized their KV cache). Error = (planned -",
        "measured) / measured. Runs: every run.json under bench/results/gpu/ with a measured peak.", "",
        "Sets: **fit** = the runs under memory_plan/fit/ (ACT_FACTOR in r1exp/plan/memory.py was fitted on its PEFT",
        "runs, Unsloth's own terms, `UnslothLoader.adjust_terms`, on its Unsloth runs: 0.5B, 1.5B, 7B with gradient",
        "checkpointing) and the Unsloth runs of unsloth_logits/ (the factor of the recomputed-logits backward);",
        "**held-out** = every other run, never used to fit anything: the claims' runs (engine defaults, start-up,",
        "log-prob reuse, vLLM's text, 7B peaks, ...) and memory_plan/held_out/ (shapes no claim keeps: Unsloth at",
        "3B 48 x 384, 1.5B 4-bit, 0.5B without gradient checkpointing; PEFT 0.5B with its engine awake); the",
        "engine's overhead beyond weights and KV cache comes from vLLM's own start-up breakdown, not from these",
        "peaks (r1exp/engines/vllm_common.py); **excluded** = not a test of the plan: named below, or run.json",
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
    lines += ["", "| set | loader | rows | mean error | max abs error | within ±10% |", "|---|---|---|---|---|---|"]
    for name in SETS:
        for loader in ("all", *sorted({r.loader for r in table})):
            errs = [r.error for r in table if r.set == name and loader in ("all", r.loader)]
            if errs:
                lines.append(f"| {name} | {loader} | {len(errs)} | {100 * sum(errs) / len(errs):+.1f}% | "
                             f"{100 * max(map(abs, errs)):.1f}% | {sum(abs(e) <= 0.10 for e in errs)}/{len(errs)} |")
    lines += ["", "Held-out misses. PEFT rows: all under-predictions, within -12% (0.5B with its engine awake and the "
              "explicit KV cache -11.7%; 7B + hf generate, the worst of the fit set at -13.5%, is -6.3% at 16 x "
              "512); the training part (peak - "
              "used before training) is 1.2-1.4x the plan's activations + log-prob head + LoRA terms. Unsloth with "
              "its loss's logits held (loader.recompute_logits=false, Unsloth's own behaviour and every Unsloth run "
              "before the option): the loss holds the micro-batch's float32 logits at once (9.3-11.5 GiB here; the "
              "per-phase torch peaks, `memory/<phase>` in each metrics.jsonl, put the peak in backward_optimizer), "
              "and its gradient checkpointing keeps one layer on the GPU; with those two terms every such row with "
              "gradient checkpointing is within ±3%. With the logits recomputed (the default) the backward holds "
              "more than one layer (factor 1.6, fitted on the recomputed runs of unsloth_logits/); the runs it was "
              "not fitted on (0.5B and 7B with the explicit KV cache, 7B 4-bit, 7B standby) are within -5% to "
              "+3.7%. Without gradient checkpointing (no fit run had it off) the plan counts every layer's "
              "activations as one checkpointed layer's and over-predicts by 16%: Unsloth keeps less per layer than "
              "that (tests/test_memory_calibration.py lists it as a known miss)."]
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
