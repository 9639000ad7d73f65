"""Small helpers the checks share: reading keys, what the run will run on, what TRL will see."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from r1exp.config import compat, plan
from r1exp.config.plan import trainer_value  # noqa: F401  (re-exported: checks read trainer keys through it)

ABSENT = object()
CPU_INSTALL, GPU_INSTALL = compat.INSTALL["cpu"], compat.INSTALL["gpu"]


def get(cfg, key, default=None):
    return OmegaConf.select(cfg, key, default=default)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def planned_gpus(ctx) -> int:
    return plan.planned_gpus(ctx.cfg, ctx.env)


def on_cpu(ctx) -> bool:
    return planned_gpus(ctx) == 0


def world_size() -> int:
    """Training processes: WORLD_SIZE as set by torchrun/accelerate for each process, 1 for a plain run."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def uses_vllm(cfg) -> bool:
    return str(get(cfg, "engine.name")) in ("vllm", "vllm_server")
