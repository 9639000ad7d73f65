"""What TRL's colocate weight sync spends its time on, per sync, next to the step's other phases.

    python bench/sync_cost.py [--out bench/results/cpu/weight_sync] [--steps 12] [OVERRIDE ...]

Runs `r1exp` in this process (engine=vllm, logger=none unless overridden) with the parts of TRL's
`VLLMGeneration.sync_weights` timed: PEFT's merge_adapter (LoRA into the base weights), the per-tensor pushes into
vLLM (`<model>.load_weights([(name, tensor)])`, one call per tensor), unmerge_adapter, vLLM's reset_prefix_cache,
and the rest (gathering, naming). Also counts the tensors and bytes pushed per sync. The step's phases come from
r1exp.observe.timing (metrics.jsonl). Writes <out>.json and <out>.md; steps after the first are averaged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Sub-parts of a weight sync, timed wherever the installed versions have them (class methods, patched by module).
SYNC_PARTS = (
    ("peft.tuners.tuners_utils", "BaseTuner.merge_adapter", "merge"),
    ("peft.tuners.tuners_utils", "BaseTuner.unmerge_adapter", "unmerge"),
    ("vllm.model_executor.models.qwen2", "Qwen2ForCausalLM.load_weights", "push"),
    ("vllm.model_executor.models.qwen3", "Qwen3ForCausalLM.load_weights", "push"),
    ("vllm.model_executor.models.llama", "LlamaForCausalLM.load_weights", "push"),
    ("vllm.entrypoints.llm", "LLM.reset_prefix_cache", "reset_cache"),
)


def measure(overrides: list[str], steps: int, work: Path) -> dict:
    from r1exp.observe import timing
    from r1exp.config.compose import compose
    from r1exp.run import run

    cfg = compose(["engine=vllm", "logger=none", f"trainer.max_steps={steps}", "trainer.logging_steps=1",
                   *overrides])
    clock = timing.PhaseClock(sync=timing._cuda_synchronize)
    counts = {"push_calls": 0, "push_tensors": 0, "push_bytes": 0}
    parts = timing._PostImportPatcher(clock, SYNC_PARTS)
    _count_pushes(parts, counts)
    run_dir = work / "run"
    parts.install()
    try:
        code = run(cfg, run_dir)
    finally:
        parts.uninstall()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps_rows = [r for r in rows if "time/step" in r]
    syncs = sum(1 for r in steps_rows if r.get("time/weight_sync", 0) > 0)
    totals = clock.take()
    later = steps_rows[1:] or steps_rows
    phases = {k.split("/", 1)[1]: statistics.fmean(r[k] for r in later) for k in timing.KEYS}
    sync_total = sum(r["time/weight_sync"] for r in steps_rows)
    per_sync = {k: v / max(1, syncs) for k, v in totals.items()}
    per_sync["rest"] = max(0.0, sync_total / max(1, syncs) - sum(per_sync.values()))
    return {"exit_code": code, "overrides": overrides, "steps": len(steps_rows), "syncs": syncs,
            "phases_mean_s": phases, "sync_parts_per_sync_s": per_sync,
            "tensors_per_sync": counts["push_tensors"] / max(1, syncs),
            "mib_per_sync": counts["push_bytes"] / max(1, syncs) / 2**20,
            "startup": json.loads((run_dir / "run.json").read_text()).get("startup", {})}


def _count_pushes(parts, counts: dict) -> None:
    """Count what each load_weights call receives (wraps the timed push once it is patched)."""
    original = parts._patch

    def patch_and_count(module, path, part):
        original(module, path, part)
        if part != "push":
            return
        *owners, attr = path.split(".")
        owner = module
        for name in owners:
            owner = getattr(owner, name)
        timed = vars(owner)[attr]

        def counted(self, weights):
            weights = list(weights)
            counts["push_calls"] += 1
            counts["push_tensors"] += len(weights)
            counts["push_bytes"] += sum(t.numel() * t.element_size() for _, t in weights)
            return timed(self, weights)

        counted._r1exp_phase = "push"
        setattr(owner, attr, counted)

    parts._patch = patch_and_count


def write(result: dict, out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**result, "command": command}, indent=1))
    p, s = result["phases_mean_s"], result["sync_parts_per_sync_s"]
    share = {k: v / p["step"] for k, v in p.items() if k != "step"}
    lines = [f"# Where a step goes with engine=vllm, and what one weight sync costs ({_machine()})", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M')}, 1-minute load average after the run "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: other work on the machine slows every figure).", "",
             f"Mean over steps 2..{result['steps']} (r1exp.observe.timing, metrics.jsonl):", "",
             "| phase | s/step | share of the step |", "|---|---|---|"]
    lines += [f"| {k} | {p[k]:.4f} | {share[k]:.1%} |" for k in (*share,)]
    lines += [f"| step | {p['step']:.4f} | 100% |", "",
              f"One weight sync ({result['syncs']} syncs, {result['tensors_per_sync']:.0f} tensors and "
              f"{result['mib_per_sync']:.1f} MiB pushed into vLLM per sync, one `load_weights` call per tensor):", "",
              "| part | s/sync |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in s.items()]
    lines += [f"| total | {sum(s.values()):.4f} |", ""]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _machine() -> str:
    return f"{platform.node() or 'host'}, {os.cpu_count()} CPUs"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/cpu/weight_sync")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("overrides", nargs="*")
    a = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(x) for x in ["bench/sync_cost.py", *(argv or sys.argv[1:])])
    with tempfile.TemporaryDirectory(prefix="r1exp-sync-") as tmp:
        result = measure(a.overrides, a.steps, Path(tmp))
    write(result, ROOT / a.out if not Path(a.out).is_absolute() else Path(a.out), command)
    print(Path(a.out).with_suffix(".md").read_text() if Path(a.out).is_absolute() else
          (ROOT / a.out).with_suffix(".md").read_text())
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
