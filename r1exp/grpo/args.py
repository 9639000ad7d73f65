"""The GRPOConfig a run trains with is the one its config says, whichever loader builds it.

r1exp's trainer group is TRL's GRPOConfig: a key left out means TRL's default, and the plan, the checks and the
README assume TRL's defaults. A loader may bring a GRPOConfig class of its own with other defaults. Unsloth's
(UnslothGRPOConfig, Unsloth 2026.10.5 on TRL 1.15, read from the class it generated on the H200) trains with 8-bit
AdamW, weight decay 0.001 and 10% warm-up, without TRL's vLLM importance-sampling correction, and, when loss_type is
dapo (r1exp's default, set explicitly), with truncated completions masked out of the loss and epsilon_high=0.28:
on the H200's random-weight benchmarks every completion was truncated, so every Unsloth step had loss 0 and gradient
norm 0 (docs/benchmarks.md), while loader=peft trained on the same config.

`build` builds the loader's class and TRL's own from the same keys and compares every TRL field (TRL's equivalences
applied: `EQUIVALENT`). A field the loader changed and the config left out gets TRL's value, passed explicitly; one
the config sets that the loader changes anyway stops the run (exit 2) with the loader's value in the fix. A loader
keeps the fields it owns (`Loader.own_trainer_fields`, each with its reason). What was pinned and kept goes to
run.json (`trainer_args`).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
from pathlib import Path

from omegaconf import OmegaConf

from r1exp.errors import ConfigError, Problem

# TRL fields with several spellings of one meaning: compared, and pinned, as the value TRL trains with
EQUIVALENT = {
    "epsilon_high": lambda args: args.epsilon if args.epsilon_high is None else args.epsilon_high,   # None: epsilon
    "top_k": lambda args: 0 if args.top_k in (None, 0, -1) else args.top_k,   # no top-k: 0 (TRL), -1 (vLLM), None
}


def defined_by_trl(cls) -> bool:
    """Whether TRL's own source defines `cls`: every method in the class's own body comes from a file in TRL's
    package. Names prove nothing: Unsloth gives its patched class TRL's module and name (`trl.trainer.grpo_config.
    GRPOConfig`, for pickling: `_patch_config_pickle_identity` in unsloth/models/rl.py, 2026.10.5), while its methods
    come from the file it generated (unsloth_compiled_cache/UnslothGRPOTrainer.py)."""
    import trl

    root = Path(trl.__file__).resolve().parent
    files = {f.__code__.co_filename for f in vars(cls).values() if inspect.isfunction(f)}
    files = {f for f in files if not f.startswith("<") and f != dataclasses.__file__}   # what @dataclass generates
    return cls.__module__.startswith("trl.") and all(Path(f).resolve().is_relative_to(root) for f in files)


def trl_config_class(config_class):
    """TRL's own GRPOConfig: the class itself, or the TRL class a loader's GRPOConfig derives from."""
    return next((c for c in config_class.__mro__ if c.__name__ == "GRPOConfig" and defined_by_trl(c)), config_class)


def value(args, name: str):
    return EQUIVALENT[name](args) if name in EQUIVALENT else getattr(args, name, None)


def differences(args, reference, owned) -> dict[str, tuple]:
    """{field: (loader's value, TRL's value)} over TRL's fields, the loader's own fields left out."""
    names = [f.name for f in dataclasses.fields(trl_config_class(type(reference))) if f.name not in owned]
    return {n: (value(args, n), value(reference, n)) for n in names if value(args, n) != value(reference, n)}


def printable(v):
    return v.value if isinstance(v, enum.Enum) else v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)


def build(config_class, kwargs: dict, owned: dict[str, str], owner: str = "the loader"):
    """(args, report): `config_class(**kwargs)` with every TRL field the loader changed and kwargs left out set to
    TRL's value; report = {"pinned": {field: {"loader": ..., "trl": ...}}, "loader_kept": {field: why}} (empty with
    TRL's own class). ConfigError when the loader's class changes a field kwargs set, or one pinned to TRL's value."""
    trl_class = trl_config_class(config_class)
    args = config_class(**kwargs)
    if trl_class is config_class:
        return args, {}
    reference = trl_class(**kwargs)
    changed = differences(args, reference, owned)
    pinned = {name: trl for name, (_, trl) in changed.items() if name not in kwargs}
    if pinned:
        args = config_class(**{**kwargs, **pinned})
    refused = differences(args, reference, owned)
    if refused:
        raise ConfigError([Problem(
            f"trainer.{name}", printable(trl),
            f"{owner}'s GRPOConfig changes trainer.{name} from {printable(trl)!r} to "
            f"{printable(loader)!r} even when it is given: the run would not train what its config says",
            f"set trainer.{name}={printable(loader)} to train with the loader's value, or use loader=peft")
            for name, (loader, trl) in refused.items()])
    report = {"pinned": {name: {"loader": printable(changed[name][0]), "trl": printable(trl)}
                         for name, trl in pinned.items()},
              "loader_kept": {name: why for name, why in owned.items()
                              if getattr(args, name, None) != getattr(reference, name, None)}}
    return args, report


def dict_field(cfg, key: str) -> dict | None:
    """trainer.<key> for a GRPOConfig dict field (generation_kwargs, model_init_kwargs, ...) as TRL reads it: a mapping,
    or a string holding a JSON object (TrainingArguments parses strings that start with '{'); None when unset.
    ValueError for anything else."""
    value = OmegaConf.select(cfg, f"trainer.{key}", default=None)
    if value is None:
        return None
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"not a mapping: {value!r}")
    return value
