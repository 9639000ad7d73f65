"""Which single change shrinks a too-big memory plan the most: each candidate knob is applied to a copy of the
config and planned again, and the candidates are ranked by the GiB they save.

Candidates keep the experiment the same where they can (gradient checkpointing, a smaller micro-batch with more
accumulation, sleeping the engine, shared weights, 4-bit) and list the ones that change it (shorter completions)
last among equals.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from r1exp.config.plan import plan_memory, trainer_value


@dataclass(frozen=True)
class Knob:
    text: str          # the override(s) to type, e.g. "trainer.gradient_checkpointing=true"
    changes: dict      # dotted key -> new value
    saves_gb: float = 0.0
    total_gb: float = 0.0


def candidates(cfg) -> list[Knob]:
    out = []
    t = lambda key, fallback=None: trainer_value(cfg, key, fallback)  # noqa: E731
    if not bool(t("gradient_checkpointing", True)):
        out.append(Knob("trainer.gradient_checkpointing=true", {"trainer.gradient_checkpointing": True}))
    micro = int(t("per_device_train_batch_size", 8))
    if micro >= 2 and micro % 2 == 0 and not t("generation_batch_size"):
        steps_key = "steps_per_generation" if t("steps_per_generation") else "gradient_accumulation_steps"
        steps = int(t(steps_key, 1) or 1)
        out.append(Knob(f"trainer.per_device_train_batch_size={micro // 2} trainer.{steps_key}={steps * 2} "
                        "(same batch, half the micro-batch)",
                        {"trainer.per_device_train_batch_size": micro // 2, f"trainer.{steps_key}": steps * 2}))
    engine = str(cfg.engine.name)
    if engine == "vllm" and not bool(cfg.engine.get("sleep_mode")):
        out.append(Knob("engine.sleep_mode=true", {"engine.sleep_mode": True}))
    if engine == "vllm" and cfg.loader.name == "peft":
        out.append(Knob("loader=unsloth (engine and trainer share one copy of the weights)",
                        {"loader.name": "unsloth", "loader.fast_inference": True}))
    if engine in ("vllm", "vllm_server") and cfg.engine.get("gpu_memory_utilization") not in ("auto", None):
        out.append(Knob("engine.gpu_memory_utilization=auto", {"engine.gpu_memory_utilization": "auto"}))
    if not bool(cfg.loader.get("load_in_4bit")):
        out.append(Knob("loader.load_in_4bit=true", {"loader.load_in_4bit": True}))
    completion = int(t("max_completion_length", 256))
    if completion >= 64:
        out.append(Knob(f"trainer.max_completion_length={completion // 2} (changes the experiment)",
                        {"trainer.max_completion_length": completion // 2}))
    return out


def ranked(cfg, env, base_total_gb: float) -> list[Knob]:
    """The knobs that save memory, biggest saving first."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    out = []
    for knob in candidates(cfg):
        changed = OmegaConf.create(resolved)
        for key, value in knob.changes.items():
            OmegaConf.update(changed, key, value, force_add=True)
        total = plan_memory(changed, env).total_gb
        if total < base_total_gb - 0.05:
            out.append(Knob(knob.text, knob.changes, base_total_gb - total, total))
    return sorted(out, key=lambda k: -k.saves_gb)
