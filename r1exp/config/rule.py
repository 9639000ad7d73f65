"""A validation rule and what it reads: the leaf every table of checks imports (no other r1exp import).

A rule is a row of data: an id, the config keys it reads, a check that yields `Problem`s for a `Context`, its
scope and a line of documentation. Components (engines, loaders, rewards, data, distributed) own their rows;
`r1exp.checks.validate` gathers them into one table and runs it.

Scope "machine": the rule is about this machine (installed packages, GPUs, the model and data on disk); only a dry
run planned for another machine (hardware.* set, see r1exp.checks.validate.severity_here) reports those as
warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from r1exp.errors import Problem


@dataclass(frozen=True)
class Context:
    cfg: object        # the composed DictConfig
    env: object        # r1exp.machine.facts.Environment
    dry_run: bool
    output_dir: str | None = None   # where Hydra will create the run folder (None: ./outputs)
    engine: object = None           # the chosen engine (r1exp.engines.base.Engine), when it could be built
    loader: object = None           # the chosen loader (r1exp.loaders.base.Loader), when it could be built
    planned: object = None          # the memory plan (r1exp.plan.memory.MemoryPlan), or the exception planning raised

    @property
    def plan(self):
        """The run's memory plan, computed once by the pre-flight. A row that reads it while planning failed raises
        what planning raised, so the failure is reported as that row's, with its id."""
        if isinstance(self.planned, Exception):
            raise self.planned
        if self.planned is None:
            raise ValueError("no memory plan: the engine or the loader could not be built")
        return self.planned


@dataclass(frozen=True)
class Rule:
    id: str
    keys: tuple        # the config keys the rule reads (documentation, and the key named in its message)
    check: Callable[[Context], Iterable[Problem] | None]
    scope: str = "config"  # config | machine
    doc: str = ""



@dataclass(frozen=True)
class BuiltRule:
    """A row of the post-build check (r1exp.checks.built): what the built trainer must hold for a component."""
    id: str
    key: str
    broken: Callable[[object, object], bool]  # (cfg, r1exp.checks.built.EngineFacts) -> True when the trainer is wrong
    why: str
    fix: str


def get(cfg, key: str, default=None):
    """A config value by dotted key, `default` when absent (rows read keys that an option may not have)."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=default)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
