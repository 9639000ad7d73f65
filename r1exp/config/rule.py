"""A validation rule and what it reads: the leaf every table of checks imports (no other r1exp import).

A rule is a row of data: an id, the config keys it reads, a check that yields `Problem`s for a `Context`, its
scope and a line of documentation. Components (engines, loaders, rewards, data, distributed) own their rows;
`r1exp.config.validate` gathers them into one table and runs it.

Scope "machine": the rule is about this machine (installed packages, GPUs, files); a dry run planned for another
machine reports those as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from r1exp.errors import Problem


@dataclass(frozen=True)
class Context:
    cfg: object        # the composed DictConfig
    env: object        # r1exp.machine.Environment
    dry_run: bool
    output_dir: str | None = None   # where Hydra will create the run folder (None: ./outputs)


@dataclass(frozen=True)
class Rule:
    id: str
    keys: tuple        # the config keys the rule reads (documentation, and the key named in its message)
    check: Callable[[Context], Iterable[Problem] | None]
    scope: str = "config"  # config | machine
    doc: str = ""
