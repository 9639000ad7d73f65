"""Which single change shrinks a too-big memory plan the most: each candidate knob is applied to a copy of the
config and planned again, and the candidates are ranked by the GiB they save.

The trainer's candidates are here (gradient checkpointing, a smaller micro-batch with more accumulation, 4-bit,
shorter completions — the one that changes the experiment, listed last among equals); the engine adds its own
(`Engine.knobs`: sleeping the engine, an automatic memory fraction), and any shipped loader may offer itself
(`Loader.alternative_knob`: shared weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from r1exp.plan.memory import plan_memory, trainer_value


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


def candidates(cfg: DictConfig) -> list[Knob]:
    from r1exp.components import component_class, engine_of, shipped_options

    out = trainer_knobs(cfg) + engine_of(cfg).knobs(cfg)
    for option, option_cfg in shipped_options("loader").items():
        try:
            knob = component_class(option_cfg, "loader").alternative_knob(cfg, option, option_cfg)
        except Exception:  # noqa: BLE001 - a loader that cannot be imported here offers nothing
            knob = None
        if knob is not None:
            out.append(knob)
    if not bool(cfg.loader.get("load_in_4bit")):
        out.append(Knob("loader.load_in_4bit=true", {"loader.load_in_4bit": True}))
    completion = int(trainer_value(cfg, "max_completion_length", 256))
    if completion >= 64:
        out.append(Knob(f"trainer.max_completion_length={completion // 2} (changes the experiment)",
                        {"trainer.max_completion_length": completion // 2}))
    return out


def ranked(cfg: DictConfig, env, base_total_gb: float) -> list[Knob]:
    """The knobs that save memory, biggest saving first."""
    resolved = OmegaConf.to_container(cfg, resolve=False)
    out = []
    for knob in candidates(cfg):
        changed = OmegaConf.create(resolved)
        for key, value in knob.changes.items():
            OmegaConf.update(changed, key, value, force_add=True, merge=False)
        total = plan_memory(changed, env).total_gb
        if total < base_total_gb - 0.05:
            out.append(Knob(knob.text, knob.changes, base_total_gb - total, total))
    return sorted(out, key=lambda k: -k.saves_gb)
