"""The dry-run report: resolved choices, the memory plan and every warning, as tables.

`memory_table(plan, measured=None)` is also what a benchmark prints to put the plan next to measured peaks.
"""

from __future__ import annotations


from rich.console import Console
from rich.table import Table

from r1exp.plan.memory import MemoryPlan, trainer_value
from r1exp.data.prompts import prompt_estimate
from r1exp.errors import render_problems

TRAINER_TERMS = ("weights", "lora+optimizer", "gradients", "optimizer", "reference_model", "activations", "logprob_head", "cuda_context", "generation_kv_cache")
ENGINE_TERMS = ("engine_weights", "engine_kv_cache", "engine_overhead")


def choices_table(run) -> Table:
    """The resolved choices of a run (r1exp.components.Resolved), one row a group."""
    cfg, env, plan = run.cfg, run.env, run.plan
    table = Table(title=f"r1exp dry run: {cfg.name}", show_header=True)
    table.add_column("group")
    table.add_column("choice")
    m = cfg.model
    trained = f"LoRA r={m.lora.r} on {_modules(m)}" if run.loader.trains_adapter else "every weight trained"
    experts = (f", {float(m.arch.active_params) / 1e9:.2f}B active of {m.arch.experts} experts"
               if m.arch.get("experts") else "")
    source = f"; arch from {m.arch.source}" if m.arch.get("source") else ""
    table.add_row("model", f"{m.name_or_path} ({float(m.arch.params) / 1e9:.2f}B{experts}, {m.dtype}, init={m.init}, "
                           f"{trained}, max_seq_length={m.max_seq_length or f'{m.arch.max_position} (its context)'}"
                           f"{source})")
    table.add_row("loader", run.loader.describe(cfg))
    table.add_row("engine", run.engine.describe(cfg, plan))
    samples = cfg.data.get("num_samples") or "all"
    source = prompt_estimate(cfg).source
    table.add_row("data", f"{cfg.data.name} ({samples} samples; longest prompt ~{plan.prompt_tokens} tokens, {source})")
    table.add_row("reward", ", ".join(f"{k} x{v.get('weight', 1.0)}" for k, v in cfg.reward.items()))
    table.add_row("eval", _eval_line(cfg))
    tools = _tools_line(cfg)
    if tools:
        table.add_row("tools", tools)
    t = lambda key: trainer_value(cfg, key)  # noqa: E731
    table.add_row("trainer", f"lr={t('learning_rate')} steps={t('max_steps')} batch={t('per_device_train_batch_size')}"
                             f" G={t('num_generations')} generation batch={plan.generation_batch}"
                             f" completion={t('max_completion_length')} beta={t('beta')}"
                             f" grad_ckpt={t('gradient_checkpointing')}")
    if plan.sharding and plan.sharding.get("world", 1) > 1:
        from r1exp.plan.sharding import Sharding

        table.add_row("sharding", Sharding(**{k: v for k, v in plan.sharding.items()}).describe())
    table.add_row("logger", str(cfg.logger.name))
    gpus = ", ".join(f"{g:.0f} GiB" for g in env.gpus) or "none"
    table.add_row("machine", f"GPUs: {gpus}; vLLM: {env.vllm_version or 'not installed'} ({env.vllm_flavour or '-'})"
                             f"; trl {env.versions.get('trl', 'not installed')}")
    return table


def _tools_line(cfg) -> str | None:
    from r1exp.tools.rules import describe

    return describe(cfg)


def _eval_line(cfg) -> str:
    from r1exp.evaluation import heldout

    if not heldout.enabled(cfg):
        return "none (the training reward only; eval=heldout scores held-out prompts)"
    if not heldout.runs(cfg):
        return "heldout, skipped: no held-out prompts, no correctness reward or an environment (see the warning)"
    e = cfg.eval
    when = [w for w, on in (("baseline", e.baseline), (f"every {e.every_steps} steps", e.every_steps),
                            ("final", e.final)) if on]
    sampling = "greedy" if e.temperature == 0 else f"temperature {e.temperature}"
    return (f"heldout: up to {e.prompts} prompts ({heldout.source_of(cfg) or 'none'}), k={e.k} {sampling}, "
            f"correct = {heldout.correctness_reward(cfg) or 'none (skipped)'}; {', '.join(when)}")


def _modules(model) -> str:
    from r1exp.models.architecture import targeted

    value = model.lora.target_modules
    picked = targeted(model.arch, value)
    return (f"{value} ({len(picked)} modules)" if isinstance(value, str) else ",".join(picked) or "no module")


def memory_table(plan: MemoryPlan, measured: dict | None = None, title: str | None = None) -> Table:
    """The plan's terms, totals and device; with `measured` (name -> GiB), a column of measured values."""
    unit = "GiB per GPU" if plan.device == "cuda" else "GiB, CPU run"
    table = Table(title=title or f"memory plan ({unit})", show_header=True)
    table.add_column("term")
    table.add_column("planned", justify="right")
    if measured is not None:
        table.add_column("measured", justify="right")

    def row(name, gb):
        cells = [name, f"{gb:.2f}"]
        if measured is not None:
            cells.append(f"{measured[name]:.2f}" if name in measured else "")
        table.add_row(*cells)

    for name in TRAINER_TERMS + ENGINE_TERMS:
        if name in plan.terms:
            row(name, plan.terms[name])
    for name, gb in plan.terms.items():
        if name not in TRAINER_TERMS + ENGINE_TERMS:
            row(name, gb)
    row("trainer", plan.trainer_gb)
    if plan.engine_gb:
        util = plan.gpu_memory_utilization
        row(f"engine (utilization {util if util is not None else 'n/a'})", plan.engine_gb)
    row("predicted peak", plan.total_gb)
    if plan.device_gb:
        table.add_row("device", f"{plan.device_gb:.2f}", *([""] if measured is not None else []))
    elif plan.device == "cpu":
        table.add_row("device", "CPU run (hardware.gpu_memory_gb=N plans a GPU)",
                      *([""] if measured is not None else []))
    else:
        table.add_row("device", "GPU, size unknown: set hardware.gpu_memory_gb", *([""] if measured is not None else []))
    return table


def print_dry_run(checked, console: Console | None = None) -> None:
    """Choices, plan, and every problem the pre-flight found (r1exp.checks.validate.Checked)."""
    console = console or Console(soft_wrap=True)
    run, problems = checked.run, checked.problems
    if run is not None:
        cfg, env, plan = run.cfg, run.env, run.plan
        console.print(choices_table(run))
        console.print(memory_table(plan))
        for note in plan.notes:
            console.print(f"note: {note}", markup=False)
        if cfg.get("reproducible") and run.engine.deterministic_cost:
            console.print(f"note: reproducible=true (deterministic mode) costs {run.engine.deterministic_cost}",
                          markup=False)
        from r1exp.scale.distributed import describe

        launch = describe(cfg, env, run.engine)
        if launch:
            console.print(launch, markup=False, highlight=False)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    if problems:
        console.print(render_problems(problems), markup=False, highlight=False)
    if errors:
        console.print(f"dry run: {len(errors)} error(s); the run would stop before loading anything.", markup=False)
    else:
        console.print(f"dry run: configuration is valid ({len(warnings)} warning(s)); nothing was loaded.",
                      markup=False)
