"""Reward functions with TRL's calling convention, selected and weighted from `cfg.reward`.

Each reward is `fn(prompts, completions, **dataset_columns) -> list[float | None]` (None = no opinion, skipped by
TRL). `cfg.reward` maps a label to `{name, weight, **params}` for a library reward, or `{_target_: pkg.mod.fn,
weight, **params}` for a user's own. Built rewards keep their label as `__name__`, which TRL logs as
`rewards/<label>/mean`.
"""

from __future__ import annotations

import functools
import importlib

from r1exp.rewards.library import LIBRARY

RESERVED = ("name", "weight", "_target_")


def resolve(entry):
    """The function a reward config names (library name or `_target_` import path)."""
    target = entry.get("_target_")
    if target:
        module, _, attr = str(target).rpartition(".")
        return getattr(importlib.import_module(module), attr)
    return LIBRARY[entry.name]


def params_of(entry) -> dict:
    return {k: v for k, v in entry.items() if k not in RESERVED}


def build_rewards(reward_cfg) -> tuple[list, list[float]]:
    """(functions, weights) in config order, ready for GRPOTrainer(reward_funcs=...) and GRPOConfig.reward_weights."""
    funcs, weights = [], []
    for label, entry in reward_cfg.items():
        fn = resolve(entry)
        params = params_of(entry)
        bound = functools.partial(fn, **params) if params else fn
        bound = functools.update_wrapper(_named(bound), fn)
        bound.__name__ = str(label)
        funcs.append(bound)
        weights.append(float(entry.get("weight", 1.0)))
    return funcs, weights


def _named(fn):
    def reward(*args, **kwargs):
        return fn(*args, **kwargs)

    return reward
