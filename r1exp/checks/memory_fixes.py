"""Which single change shrinks a too-big memory plan the most: each candidate knob is applied to a copy of the
config and planned again, and the candidates are ranked by the GiB they save.

The trainer's candidates (r1exp.plan.knobs: gradient checkpointing, a smaller micro-batch with more accumulation)
come first, then the engine's (`Engine.knobs`: sleeping the engine, an automatic memory fraction), any shipped
loader that offers itself (`Loader.alternative_knob`: shared weights), 4-bit, and shorter completions (the one
that changes the experiment, listed last among equals).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from r1exp.components import component_class, plan_for, shipped_options
from r1exp.plan.knobs import Knob, trainer_knobs
from r1exp.plan.memory import trainer_value


def candidates(ctx) -> list[Knob]:
    cfg = ctx.cfg
    out = trainer_knobs(cfg) + ctx.engine.knobs(cfg, ctx.plan)
    for option, option_cfg in shipped_options("loader").items():
        try:
            knob = component_class(option_cfg, "loader").alternative_knob(cfg, ctx.loader, ctx.engine, option,
                                                                          option_cfg)
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


def ranked(ctx) -> list[Knob]:
    """The knobs that save memory against the run's plan (`ctx.plan`), biggest saving first. Each changed config
    is a config of its own, so its components are built from it."""
    cfg, base_total_gb = ctx.cfg, ctx.plan.total_gb
    resolved = OmegaConf.to_container(cfg, resolve=False)
    out = []
    for knob in candidates(ctx):
        changed = OmegaConf.create(resolved)
        for key, value in knob.changes.items():
            OmegaConf.update(changed, key, value, force_add=True, merge=False)
        total = plan_for(changed, ctx.env).total_gb
        if total < base_total_gb - 0.05:
            out.append(Knob(knob.text, knob.changes, base_total_gb - total, total))
    return sorted(out, key=lambda k: -k.saves_gb)
