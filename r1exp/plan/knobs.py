"""A knob: one change of the config that may shrink a too-big memory plan, and the trainer's own candidates
(gradient checkpointing, a smaller micro-batch with more accumulation). Engines add theirs (`Engine.knobs`), a
loader offers itself (`Loader.alternative_knob`); r1exp.checks.memory_fixes ranks them all by the GiB they save.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from r1exp.plan.memory import trainer_value


@dataclass(frozen=True)
class Knob:
    text: str          # the override(s) to type, e.g. "trainer.gradient_checkpointing=true"
    changes: dict      # dotted key -> new value (a whole group's config to switch an option)
    saves_gb: float = 0.0
    total_gb: float = 0.0


def trainer_knobs(cfg: DictConfig) -> list[Knob]:
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
    return out
