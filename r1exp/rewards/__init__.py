"""Reward functions with TRL's calling convention, selected and weighted from `cfg.reward`.

Each reward is `fn(prompts=..., completions=..., completion_ids=..., **dataset_columns) -> list[float | None]`
(None = no opinion, skipped by TRL). `cfg.reward` maps a label to `{name, weight, **params}` for a library reward
(r1exp.rewards.library), or `{_target_: pkg.mod.fn, weight, **params}` for a user's own. Built rewards are
`GuardedReward`s (failure-tolerant, timed) named by their label, which TRL logs as `rewards/<label>/mean`.
Importing this package is light: no torch, TRL or math-verify.
"""

from __future__ import annotations

import functools

from r1exp.rewards.guard import GuardedReward
from r1exp.rewards.library import LIBRARY, SPECS

# Keys of a reward entry that r1exp reads; every other key is a keyword argument of the function.
RESERVED = ("name", "weight", "_target_", "sanity_probe")


def resolve(entry):
    """The function a reward config names (library name or `_target_` import path)."""
    target = entry.get("_target_")
    if target:
        from hydra.utils import get_object

        return get_object(str(target))
    return LIBRARY[entry.name]


def params_of(entry) -> dict:
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else dict(entry)
    return {k: v for k, v in plain.items() if k not in RESERVED}


def probe_of(entry) -> str:
    """The sanity probe for a reward: the entry's `sanity_probe`, else the library's, else `answer`."""
    if entry.get("sanity_probe"):
        return str(entry.sanity_probe)
    spec = SPECS.get(str(entry.get("name"))) if not entry.get("_target_") else None
    return spec.probe if spec else "answer"


def bound_reward(entry):
    """The reward function with its configured keyword arguments applied."""
    fn = resolve(entry)
    params = params_of(entry)
    return functools.partial(fn, **params) if params else fn


def build_rewards(reward_cfg) -> tuple[list, list[float]]:
    """(functions, weights) in config order, ready for GRPOTrainer(reward_funcs=...) and GRPOConfig.reward_weights."""
    funcs, weights = [], []
    for label, entry in reward_cfg.items():
        funcs.append(GuardedReward(bound_reward(entry), str(label)))
        weights.append(float(entry.get("weight", 1.0)))
    if any(SPECS[e.name].math_verify for e in reward_cfg.values() if not e.get("_target_") and e.get("name") in SPECS):
        from r1exp.rewards.mathcheck import warm_up

        warm_up()
    return funcs, weights
