"""Components chosen by `_target_`: the engine (conf/engine/*.yaml) and the loader (conf/loader/*.yaml).

A component is one class in one module plus one YAML whose `_target_` names the class; the YAML's other keys are
the class's typed fields (a pydantic model, so a wrong type or range is reported with the key). The class owns
what the component means: its validation rows, its share of the memory plan, what it passes to TRL, its
post-build check, its lifecycle, its memory knobs and its dry-run line. Nothing outside a component's module
compares component names. A user's own engine or loader is a `_target_` to a subclass of
`r1exp.engines.base.Engine` / `r1exp.loaders.base.Loader`, like a custom reward.

This is `hydra.utils.instantiate` (Hydra's `get_class` on `_target_`, the other keys as arguments), done in two
steps so that validation gets pydantic's structured errors (every wrong key at once) instead of one wrapped
exception. Import-light: component modules import torch, TRL or vLLM only inside their build methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from r1exp.plan.memory import plan_memory

GROUPS = ("engine", "loader")


@dataclass(frozen=True)
class Resolved:
    """A run's components, resolved once by the pre-flight and handed down: the build, the loader's load and the
    post-build check receive them; nothing downstream rebuilds them from the config."""
    cfg: DictConfig
    env: object          # r1exp.machine.facts.Environment
    engine: object       # r1exp.engines.base.Engine
    loader: object       # r1exp.loaders.base.Loader
    plan: object         # r1exp.plan.memory.MemoryPlan
    device: str          # cuda | cpu: where this run trains (r1exp.machine.facts.run_device)


def resolve(cfg: DictConfig, env=None) -> Resolved:
    """The components of a config that is known to be valid (the pre-flight's own path reports what is not)."""
    from r1exp.machine.facts import detect, run_device

    env = env or detect()
    engine, loader = engine_of(cfg), loader_of(cfg)
    return Resolved(cfg, env, engine, loader, plan_memory(cfg, env, engine, loader), run_device(cfg, env))


def plan_for(cfg: DictConfig, env):
    """The memory plan of a config with its components built from it: a knob's changed config, a benchmark's."""
    return plan_memory(cfg, env, engine_of(cfg), loader_of(cfg))


class ComponentError(Exception):
    """The group's `_target_` is missing, not importable, or not a component class."""

    def __init__(self, group: str, target, why: str):
        super().__init__(why)
        self.group, self.target, self.why = group, target, why


def component_class(node, group: str):
    from hydra.utils import get_class

    from r1exp.engines.base import Engine
    from r1exp.loaders.base import Loader

    base = {"engine": Engine, "loader": Loader}[group]
    target = node.get("_target_") if node is not None and OmegaConf.is_dict(node) else None
    if not target:
        raise ComponentError(group, target, f"the {group} config names no `_target_` class")
    try:
        cls = get_class(str(target))
    except Exception as e:  # noqa: BLE001 - Hydra wraps every import failure; its message names the cause
        raise ComponentError(group, target, f"cannot import {target}: {str(e).splitlines()[0]}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ComponentError(group, target, f"{target} is not a subclass of {base.__module__}.{base.__name__}")
    return cls


def fields_of(node) -> dict:
    """The component's fields: its config without `_target_`, interpolations resolved."""
    plain = OmegaConf.to_container(node, resolve=True)
    plain.pop("_target_", None)
    return plain


def build(node, group: str):
    """The component object of a config node (raises ComponentError or pydantic.ValidationError)."""
    return component_class(node, group).model_validate(fields_of(node))


def engine_of(cfg: DictConfig):
    return build(cfg.engine, "engine")


def loader_of(cfg: DictConfig):
    return build(cfg.loader, "loader")


def shipped_options(group: str, conf_dir: Path | None = None) -> dict:
    """option name -> its YAML as a config, for every file of a group in conf/ (e.g. the loaders a knob may
    suggest switching to)."""
    from r1exp.config.compose import CONF_DIR

    folder = Path(conf_dir or CONF_DIR) / group
    return {p.stem: OmegaConf.load(p) for p in sorted(folder.glob("*.yaml"))}
