"""The dry-run report: resolved choices, the memory plan and the warnings, as tables."""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig  # noqa: F401  (keeps hydra's import time out of the timing below)
from rich.console import Console
from rich.table import Table

from r1exp.config.plan import plan_memory


def print_dry_run(cfg, env, console: Console | None = None) -> None:
    console = console or Console()
    choices = Table(title=f"r1exp dry run: {cfg.name}", show_header=True)
    choices.add_column("group")
    choices.add_column("choice")
    choices.add_row("model", f"{cfg.model.name_or_path} ({float(cfg.model.arch.params) / 1e9:.2f}B, {cfg.model.dtype}, init={cfg.model.init})")
    loader = cfg.loader.name + (f" fast_inference={cfg.loader.fast_inference}" if "fast_inference" in cfg.loader else "")
    choices.add_row("loader", loader)
    choices.add_row("engine", str(cfg.engine.name))
    choices.add_row("data", f"{cfg.data.name} ({cfg.data.get('num_samples')} samples)")
    choices.add_row("reward", ", ".join(f"{k} x{v.get('weight', 1.0)}" for k, v in cfg.reward.items()))
    t = cfg.trainer
    choices.add_row("trainer", f"lr={t.learning_rate} steps={t.max_steps} batch={t.per_device_train_batch_size} "
                               f"G={t.num_generations} completion={t.max_completion_length} beta={t.beta}")
    choices.add_row("logger", str(cfg.logger.name))
    gpus = ", ".join(f"{g:.0f} GiB" for g in env.gpus) or "none"
    choices.add_row("machine", f"GPUs: {gpus}; vLLM: {env.vllm_version or 'not installed'} ({env.vllm_flavour or '-'})")
    console.print(choices)
    plan = plan_memory(cfg, env)
    mem = Table(title="memory plan (GiB per GPU)", show_header=True)
    mem.add_column("term")
    mem.add_column("GiB", justify="right")
    for name, gb in plan.terms.items():
        mem.add_row(name, f"{gb:.2f}")
    mem.add_row("trainer", f"{plan.trainer_gb:.2f}")
    if cfg.engine.name == "vllm":
        util = plan.gpu_memory_utilization
        mem.add_row(f"engine (gpu_memory_utilization={util if util is not None else 'n/a'})", f"{plan.engine_gb:.2f}")
    mem.add_row("predicted peak", f"{plan.total_gb:.2f}")
    mem.add_row("device", f"{plan.device_gb:.0f}" if plan.device_gb else "unknown (set hardware.gpu_memory_gb)")
    console.print(mem)
    for note in plan.notes:
        console.print(f"note: {note}")
    console.print("dry run: configuration is valid; nothing was loaded.")
