"""Seconds per GRPO step: each engine vs engine=hf, and r1exp vs the same run written directly against TRL.

    python bench/step_time.py [--model LABEL=OVERRIDES ...] [--engines hf,vllm] [--steps 8] [--skip 2]
                              [--repeats 2] [--set OVERRIDE ...] [--out bench/results/cpu/step_time]

For every model x engine it runs, one after the other and `--repeats` times interleaved:
- r1exp: `python -m r1exp <model> engine=<e> <settings> logger=none` (the whole framework: checks, reward guard
  and monitor, metrics file, manifest);
- bare TRL: this file with `--bare RUN_DIR`, in a fresh process: the GRPOConfig r1exp derived for that run (same
  keys, same engine arguments, and on CPU the vLLM weight-sync patch without which TRL cannot sync at all), the same
  model folder, data rows and reward functions, and then nothing but `GRPOTrainer(...).train()`.
Per step it reads TRL's own `step_time` (the training step, generation included) and, per run, TRL's
`train_runtime` divided by the steps (what callbacks and logging add shows there). The first `--skip` steps are warm-up.
Framework overhead = r1exp / bare - 1 on the median of both measures (target: within 5%).

Models are Hydra overrides, so the same file runs on a GPU with any model config, e.g.
    python bench/step_time.py --model "q05=model=qwen0_5b model.init=random" \\
        --set trainer.per_device_train_batch_size=64 trainer.num_generations=8 trainer.max_completion_length=256 \\
        --out bench/results/gpu/trl_overhead
`OMP`/`GOMP` settings are the same for every run (GOMP_SPINCOUNT, see r1exp/patches/vllm_cpu_linear.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {
    "tiny": "model=tiny",
    # ~25M parameters: the tiny model's architecture at a larger size, random weights, no warm-up.
    "25M": "model=tiny model.warmup=null model.arch.hidden=512 model.arch.layers=6 model.arch.heads=8 "
           "model.arch.kv_heads=2 model.arch.head_dim=64 model.arch.intermediate=2048 model.arch.vocab=4096 "
           "model.arch.params=25.0e6",
}
# The CPU settings of the stack's first measurement: 4 prompts x 4 generations x 32 tokens, LoRA r=8.
CPU_SETTINGS = ["trainer.per_device_train_batch_size=16", "trainer.num_generations=4",
                "trainer.max_completion_length=32", "model.lora.r=8", "model.lora.alpha=16",
                "checks.reward_sanity=false"]
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
       "TOKENIZERS_PARALLELISM": "false", "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "10000")}
TARGET_OVERHEAD = 0.05


# --- the bare TRL run ------------------------------------------------------------------------------------------

def bare_run(run_dir: Path) -> dict:
    """The run r1exp made in run_dir, again, as a plain TRL script (r1exp only supplies its configuration)."""
    from omegaconf import OmegaConf

    from r1exp import data, rewards
    from r1exp.build import grpo_config
    from r1exp.components import resolve
    from r1exp.models.source import model_source
    from r1exp.machine.facts import detect

    cfg = OmegaConf.create(json.loads((run_dir / "run.json").read_text())["config"])
    run = resolve(cfg, detect())
    plan, device, engine = run.plan, run.device, run.engine
    engine.before_imports(cfg, device)
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    path = model_source(cfg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, str(cfg.model.dtype)))
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    lora = cfg.model.lora
    peft_config = LoraConfig(r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    funcs = [rewards.bound_reward(entry) for entry in cfg.reward.values()]
    for func, label in zip(funcs, cfg.reward.keys()):
        func.__name__ = str(label)                 # TRL names the reward columns after the function
    weights = [float(entry.get("weight", 1.0)) for entry in cfg.reward.values()]
    args, _ = grpo_config(run, run_dir / "bare", "none", weights)
    # the engine's build context: on CPU the vLLM weight-sync patch (TRL cannot sync at all without it) and the
    # vLLM arguments GRPOConfig has no field for
    with engine.build_context(cfg, plan, device, log=lambda *_: None):
        trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=data.build_dataset(cfg.data),
                              processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    return {"log_history": trainer.state.log_history}


def _run(cmd: list[str], log_path: Path) -> int:
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "w") as log:
        return subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def step_times(rows: list[dict]) -> list[float]:
    return [float(r["step_time"]) for r in rows if "step_time" in r]


def train_wall(rows: list[dict]) -> float | None:
    runtime = [float(r["train_runtime"]) for r in rows if "train_runtime" in r]
    return runtime[-1] if runtime else None


def measure_r1exp(overrides: list[str], run_dir: Path) -> dict:
    code = _run([sys.executable, "-m", "r1exp", *overrides, f"hydra.run.dir={run_dir}"], run_dir.with_suffix(".log"))
    if code != 0:
        raise SystemExit(f"r1exp failed ({code}): see {run_dir.with_suffix('.log')}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"step_times": step_times(rows), "train_wall_s": train_wall(rows), "load_after": os.getloadavg()[0]}


def measure_bare(run_dir: Path) -> dict:
    out = run_dir / "bare.json"
    code = _run([sys.executable, __file__, "--bare", str(run_dir), "--bare-out", str(out)],
                run_dir.with_name(run_dir.name + "_bare.log"))
    if code != 0:
        raise SystemExit(f"bare TRL run failed ({code}): see {run_dir.with_name(run_dir.name + '_bare.log')}")
    result = json.loads(out.read_text())
    return {"step_times": step_times(result["log_history"]), "train_wall_s": train_wall(result["log_history"]),
            "load_after": os.getloadavg()[0]}


def summarize(samples: list[dict], steps: int, skip: int) -> dict:
    per_step = [t for s in samples for t in s["step_times"][skip:]]
    wall = [s["train_wall_s"] / steps for s in samples if s["train_wall_s"]]
    return {"step_time_median_s": statistics.median(per_step), "step_time_mean_s": statistics.fmean(per_step),
            "train_wall_per_step_s": statistics.median(wall), "n_steps": len(per_step), "runs": len(samples),
            "max_load_after": max(s.get("load_after", 0.0) for s in samples)}


def bench(models: dict, engines: list[str], steps: int, skip: int, repeats: int, settings: list[str],
          work: Path) -> list[dict]:
    rows = []
    for label, model_overrides in models.items():
        for engine in engines:
            overrides = [*shlex.split(model_overrides), f"engine={engine}", *settings, "logger=none",
                         f"trainer.max_steps={steps}", "trainer.logging_steps=1"]
            samples = {"r1exp": [], "bare": []}
            for i in range(repeats):
                run_dir = work / f"{label}_{engine}_{i}"
                samples["r1exp"].append(measure_r1exp(overrides, run_dir))
                samples["bare"].append(measure_bare(run_dir))
            r1, bare = summarize(samples["r1exp"], steps, skip), summarize(samples["bare"], steps, skip)
            rows.append({"model": label, "engine": engine, "overrides": overrides, "r1exp": r1, "bare": bare,
                         "overhead_step_time": r1["step_time_median_s"] / bare["step_time_median_s"] - 1,
                         "overhead_train_wall": r1["train_wall_per_step_s"] / bare["train_wall_per_step_s"] - 1,
                         "raw": samples})
            print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict) -> str:
    return (f"{row['model']:>6} {row['engine']:>5}: r1exp {row['r1exp']['step_time_median_s']:.3f} s/step "
            f"(wall {row['r1exp']['train_wall_per_step_s']:.3f}), bare TRL {row['bare']['step_time_median_s']:.3f} "
            f"(wall {row['bare']['train_wall_per_step_s']:.3f}), overhead {row['overhead_step_time']:+.1%} "
            f"(wall {row['overhead_train_wall']:+.1%})")


def write(rows: list[dict], out: Path, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    lines = [f"# Seconds per GRPO step ({meta['machine']})", "", f"Command: `{meta['command']}`", "",
             f"Settings: {' '.join(meta['settings'])}; {meta['steps']} steps per run, the first {meta['skip']} "
             f"skipped, {meta['repeats']} runs of each, r1exp and bare TRL interleaved. `step` = median of TRL's "
             "`step_time` (the training step, generation included); `wall` = median of TRL's train_runtime / steps.",
             f"`load` = the highest 1-minute load average seen after a run ({os.cpu_count()} CPUs; other work on "
             "the machine slows every figure).",
             "", "| model | engine | r1exp step | bare TRL step | overhead | r1exp wall | bare wall | overhead (wall) "
             "| load |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['engine']} | {r['r1exp']['step_time_median_s']:.3f} | "
                     f"{r['bare']['step_time_median_s']:.3f} | {r['overhead_step_time']:+.1%} | "
                     f"{r['r1exp']['train_wall_per_step_s']:.3f} | {r['bare']['train_wall_per_step_s']:.3f} | "
                     f"{r['overhead_train_wall']:+.1%} | "
                     f"{max(r['r1exp']['max_load_after'], r['bare']['max_load_after']):.1f} |")
    lines += ["", "each engine vs engine=hf (r1exp, median step; > 1x is faster than hf):", ""]
    for label in dict.fromkeys(r["model"] for r in rows):
        by = {r["engine"]: r["r1exp"]["step_time_median_s"] for r in rows if r["model"] == label}
        for engine, seconds in by.items():
            if engine != "hf" and "hf" in by:
                lines.append(f"- {label}: hf {by['hf']:.3f} s, {engine} {seconds:.3f} s, {engine} is "
                             f"{by['hf'] / seconds:.2f}x")
    within = all(abs(r["overhead_step_time"]) <= TARGET_OVERHEAD for r in rows)
    lines += ["", f"Overhead target (|r1exp/bare - 1| <= {TARGET_OVERHEAD:.0%} on the median step): "
              f"{'met' if within else 'NOT met'} for every row."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="LABEL=OVERRIDES, or a preset: " + ", ".join(PRESETS))
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=None, help="overrides for every run (default: the CPU settings)")
    parser.add_argument("--out", default="bench/results/cpu/step_time")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    parser.add_argument("--bare-out", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.bare:
        result = bare_run(Path(a.bare))
        Path(a.bare_out).write_text(json.dumps(result, default=float))
        return 0
    models = {}
    for spec in a.model or ["tiny", "25M"]:
        label, _, overrides = spec.partition("=")
        models[label] = overrides if overrides else PRESETS[label]
    settings = CPU_SETTINGS if a.set is None else a.set
    import tempfile

    work = Path(a.work or tempfile.mkdtemp(prefix="r1exp-step-time-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = bench(models, a.engines.split(","), a.steps, a.skip, a.repeats, settings, work)
    meta = {"command": "python " + " ".join(shlex.quote(x) for x in ["bench/step_time.py", *(argv or sys.argv[1:])]),
            "machine": f"{platform.node() or 'host'}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
            "settings": settings, "steps": a.steps, "skip": a.skip, "repeats": a.repeats, "env": ENV,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    write(rows, ROOT / a.out, meta)
    print(f"wrote {a.out}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
