"""The generic rows of the rules table: the schema's types and ranges, the machine the config asks for, whether
the memory plan fits, and whether the run folder can be created. Rows about a component live with it."""

from __future__ import annotations

from pathlib import Path

from r1exp.machine.bytecode import check as bytecode_check
from r1exp.checks.memory_fixes import ranked
from r1exp.config.rule import Rule, get
from r1exp.config.schema import schema_problems
from r1exp.errors import Problem
from r1exp.machine.kernel_cache import check as kernel_cache_check
from r1exp.machine.facts import why_not_creatable


def schema_types(ctx):
    return [p for p in schema_problems(ctx.cfg) if p.rule != "range"]


def schema_ranges(ctx):
    return [p for p in schema_problems(ctx.cfg) if p.rule == "range"]


def reproducible(ctx):
    """reproducible=true needs every component to have a deterministic mode."""
    if not get(ctx.cfg, "reproducible", False):
        return
    for group, part in (("engine", ctx.engine), ("loader", ctx.loader)):
        if part is not None and part.not_reproducible:
            yield Problem(f"{group}.name", part.name, f"reproducible=true cannot be honoured with {group}={part.name}: "
                          f"{part.not_reproducible}",
                          "drop reproducible=true (python -m r1exp.reproduce then judges a rerun against the noise), "
                          "or use loader=peft with engine=vllm or engine=hf")


def hardware_present(ctx):
    """What the config says the machine has, against what it has (machine scope: a plan for another box is fine)."""
    cfg, env = ctx.cfg, ctx.env
    if get(cfg, "hardware.device") == "cuda" and not env.has_cuda:
        yield Problem("hardware.device", "cuda", "no CUDA GPU is visible on this machine",
                      "use hardware.device=auto (CPU here), or run on a GPU machine")
    wanted = get(cfg, "hardware.num_gpus")
    if isinstance(wanted, int) and wanted > len(env.gpus):
        yield Problem("hardware.num_gpus", wanted, f"this machine has {len(env.gpus)} visible GPU(s)",
                      f"set hardware.num_gpus<={len(env.gpus)} or null (detect)")
    memory = get(cfg, "hardware.gpu_memory_gb")
    if env.gpus and isinstance(memory, (int, float)) and memory > max(env.gpus) + 0.5:
        yield Problem("hardware.gpu_memory_gb", memory,
                      f"this machine's GPUs have {max(env.gpus):.2f} GiB: the plan assumes more than there is",
                      "set hardware.gpu_memory_gb=null to plan for the detected GPU", severity="warning")


def fits_gpu(ctx):
    plan = ctx.plan
    if plan.fits:
        return
    knobs = ranked(ctx)
    terms = ", ".join(f"{k} {v:.1f}" for k, v in sorted(plan.terms.items(), key=lambda kv: -kv[1])[:4])
    why = (f"predicted peak {plan.total_gb:.2f} GiB > {plan.device_gb:.2f} GiB per GPU (largest terms, GiB: {terms}"
           + (f"; engine reservation {plan.engine_gb:.1f}" if plan.engine_gb else "") + ")")
    if knobs:
        best = knobs[0]
        fix = f"biggest single saving: {best.text} (-{best.saves_gb:.1f} GiB -> {best.total_gb:.1f} GiB)"
        if len(knobs) > 1:
            fix += "; then: " + "; ".join(f"{k.text} (-{k.saves_gb:.1f})" for k in knobs[1:4])
    else:
        fix = "use a smaller model or a GPU with more memory (hardware.gpu_memory_gb plans for one)"
    yield Problem("memory", f"{plan.total_gb:.2f} GiB", why, fix)


def output_writable(ctx):
    """The folder Hydra will create the run folder in must be writable (checked before it is created, by creating
    and removing a temporary file in its nearest existing ancestor)."""
    folder = Path(getattr(ctx, "output_dir", None) or "outputs").expanduser()
    why = why_not_creatable(folder)
    if why is not None:
        yield Problem("hydra.run.dir", str(folder), f"cannot create the run folder: {why}",
                      "run from a writable folder, or set hydra.run.dir=PATH (hydra.sweep.dir for -m) to one")


RULES: list[Rule] = [
    Rule("schema.type", ("*",), schema_types, doc="every r1exp key exists, is set, and has the type conf/ documents"),
    Rule("range", ("*",), schema_ranges, doc="numbers in range: lr > 0, max_steps > 0, temperature > 0, lora.r >= 1"),
    Rule("reproducible", ("reproducible", "engine.name", "loader.name"), reproducible,
         doc="the deterministic mode exists for the chosen engine and loader"),
    Rule("hardware.present", ("hardware.device", "hardware.num_gpus", "hardware.gpu_memory_gb"), hardware_present,
         scope="machine", doc="the GPUs the config asks for exist here"),
    Rule("memory.fits", ("model.*", "loader.*", "engine.*", "trainer.*", "hardware.gpu_memory_gb"), fits_gpu,
         doc="the memory plan fits the GPU; else name the knob that saves the most"),
    Rule("output.writable", ("hydra.run.dir",), output_writable, scope="machine", doc="the run folder can be created"),
    Rule("hardware.kernel_cache", ("hardware.kernel_cache",), kernel_cache_check, scope="machine",
         doc="the kernel cache folder can be created and written"),
    Rule("machine.bytecode", ("machine.bytecode",), bytecode_check, scope="machine",
         doc="the heavy packages have compiled bytecode, or Python can write it (else every run compiles them)"),
]
