"""What the run reads and writes: rewards (names and weights), the data file, the output folder.

Reward-specific rules (a custom `_target_` importable with the right signature, the data columns each reward
reads) live with the rewards (r1exp.config.reward_rules) and are appended to the same table.
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from r1exp.config.checks.common import get, is_number
from r1exp.errors import Problem

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".txt", ".tsv")


def _library() -> dict:
    from r1exp.rewards.library import LIBRARY  # light: functions only, math-verify loads on first call

    return LIBRARY


def reward_names(ctx):
    rewards = ctx.cfg.get("reward")
    if not rewards:
        yield Problem("reward", rewards, "no reward is selected: GRPO has nothing to learn from",
                      "select at least one, e.g. reward=[accuracy,format]")
        return
    library = _library()
    for label, entry in rewards.items():
        key = f"reward.{label}"
        if not OmegaConf.is_dict(entry):
            yield Problem(key, entry, "a reward is a mapping with `name` (a library reward) or `_target_`",
                          f"see conf/reward/ for examples; e.g. {key}.name=accuracy")
            continue
        if entry.get("_target_"):
            continue
        name = entry.get("name")
        if name is None:
            yield Problem(f"{key}.name", None, "the reward names neither a library reward nor a `_target_`",
                          f"set {key}.name to one of: {', '.join(sorted(library))}; or {key}._target_=pkg.module.fn")
        elif str(name) not in library:
            close = difflib.get_close_matches(str(name), list(library), n=2, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            yield Problem(f"{key}.name", name, "not a reward in the library",
                          f"{hint}library rewards: {', '.join(sorted(library))}; your own: {key}._target_=pkg.module.fn")


def reward_weights(ctx):
    rewards = ctx.cfg.get("reward") or {}
    weights = []
    for label, entry in rewards.items():
        if not OmegaConf.is_dict(entry):
            continue
        weight = entry.get("weight", 1.0)
        if not is_number(weight) or not math.isfinite(weight):
            yield Problem(f"reward.{label}.weight", weight, "a reward weight must be a finite number",
                          f"set reward.{label}.weight to a number such as 1.0 (negative = penalty)")
        else:
            weights.append(weight)
    if weights and len(weights) == len(rewards) and all(w == 0 for w in weights):
        yield Problem("reward", {str(k): 0 for k in rewards}, "every reward weight is 0: all advantages are 0 and "
                      "nothing is learned", "give at least one reward a non-zero weight")


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~")) or path.lower().endswith(LOCAL_SUFFIXES) or path.count("/") >= 2


def data_path(ctx):
    path = get(ctx.cfg, "data.path")
    if not isinstance(path, str) or not path:
        return
    local = Path(path).expanduser()
    if _looks_local(path) and not local.exists():
        yield Problem("data.path", path, f"no such file or folder (looked at {local.resolve()})",
                      "fix the path (relative paths start at the folder you run from), or give a hub dataset name "
                      "like openai/gsm8k")
    elif local.exists() and local.is_file() and local.stat().st_size == 0:
        yield Problem("data.path", path, "the file is empty", "point data.path at a file with examples")


def output_writable(ctx):
    """The folder Hydra will create the run folder in must be writable (checked before it is created, by creating
    and removing a temporary file in its nearest existing ancestor: permission bits say nothing to root)."""
    folder = Path(getattr(ctx, "output_dir", None) or "outputs").expanduser()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        yield Problem("hydra.run.dir", str(folder), f"{probe} is a file, not a folder",
                      "choose another output folder: hydra.run.dir=PATH")
        return
    try:
        handle, name = tempfile.mkstemp(dir=probe, prefix=".r1exp-write-check-")
        os.close(handle)
        os.unlink(name)
    except OSError as e:
        yield Problem("hydra.run.dir", str(folder), f"cannot create the run folder under {probe}: {e.strerror}",
                      "run from a writable folder, or set hydra.run.dir=PATH (hydra.sweep.dir for -m) to one")
