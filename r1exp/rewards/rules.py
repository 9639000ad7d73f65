"""Checks of the reward configs against the data, before anything is loaded: rows of the rules table.

The classic silent failure of a GRPO run is a reward that reads a column the data does not have (open-r1's
`solution` against a dataset's `answer`), or a user's function that cannot be called the way TRL calls it. These
rules catch both from the config alone: library rewards declare the columns they read (r1exp.rewards.library);
a user's reward (`_target_`) is imported and its signature read (its required parameters, other than the ones TRL
always passes, are dataset columns); the data config says which columns it makes (r1exp.data.columns_of), and for
a local file the fields of its first record are read. Import-light: no torch, TRL or math-verify here (importing a
user's `_target_` module imports whatever that module imports).
"""

from __future__ import annotations

import difflib
import inspect
import math

from omegaconf import OmegaConf

from r1exp import data
from r1exp.config.rule import Rule, get, is_number
from r1exp.data.tags import DEFAULT, Tags, configured, tag_problems
from r1exp.errors import Problem
from r1exp.rewards import RESERVED, params_of
from r1exp.rewards.library import SPECS
from r1exp.rewards.sanity import PROBES

# Keyword arguments TRL passes to every reward besides the dataset's columns.
TRL_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def _entries(cfg):
    reward = OmegaConf.select(cfg, "reward", default=None)
    return [(label, entry) for label, entry in reward.items() if OmegaConf.is_dict(entry)] if reward else []


def import_target(target: str):
    """(function, None) or (None, why it cannot be used), imported as Hydra imports a `_target_`."""
    from hydra.utils import get_object

    module_name, _, attr = str(target).rpartition(".")
    if not module_name:
        return None, "it is not a dotted path pkg.module.function"
    try:
        fn = get_object(str(target))
    except Exception as e:  # noqa: BLE001 - any import failure is the user's to see, with its cause
        return None, _why_not_importable(module_name, attr, e)
    if not callable(fn):
        return None, f"{target} is a {type(fn).__name__}, not a function"
    return fn, None


def _why_not_importable(module_name: str, attr: str, error: Exception) -> str:
    """Hydra's message names the whole path; say whether the module or the name in it is missing."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001
        return f"importing {module_name} failed: {type(e).__name__}: {e}"
    if not hasattr(module, attr):
        return f"module {module_name} has no attribute {attr!r}"
    return f"{type(error).__name__}: {str(error).splitlines()[0]}"


def _signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _takes_kwargs(sig) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def required_columns(fn, configured: set) -> list[str]:
    """A user's reward's required parameters that are neither TRL's own arguments nor configured: dataset columns."""
    sig = _signature(fn)
    if sig is None:
        return []
    return [name for name, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
            and name not in TRL_KWARGS and name not in configured]


def library_params(fn) -> list[str]:
    """A library reward's configurable parameters: its keyword-only arguments."""
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]


def check_target(ctx):
    for label, entry in _entries(ctx.cfg):
        target = entry.get("_target_")
        if not target:
            continue
        fn, why = import_target(target)
        if fn is None:
            yield Problem(f"reward.{label}._target_", target, f"cannot import the reward: {why}",
                          "point _target_ at an importable function (is its package on PYTHONPATH?)")
            continue
        sig = _signature(fn)
        if sig is None:
            continue
        if "completions" not in sig.parameters and not _takes_kwargs(sig):
            yield Problem(f"reward.{label}._target_", target, f"{target}{sig} takes no `completions`",
                          "TRL calls rewards as fn(prompts=..., completions=..., completion_ids=..., **columns): "
                          "accept completions and **kwargs")
        elif not _takes_kwargs(sig):
            yield Problem(f"reward.{label}._target_", target, f"{target}{sig} does not accept **kwargs",
                          "TRL passes every dataset column and trainer_state/log_extra/log_metric as keyword "
                          "arguments: add **kwargs to its signature")


def check_params(ctx):
    for label, entry in _entries(ctx.cfg):
        probe = entry.get("sanity_probe")
        if probe is not None and probe not in (*PROBES, "none"):
            yield Problem(f"reward.{label}.sanity_probe", probe, "not a sanity probe",
                          f"use one of {', '.join(PROBES)}, or none to skip this reward in the sanity check")
        spec = SPECS.get(entry.get("name")) if not entry.get("_target_") else None
        if spec is None:
            continue
        known = library_params(spec.fn)
        for key in params_of(entry):
            if key not in known:
                allowed = ", ".join(known) if known else "none"
                yield Problem(f"reward.{label}.{key}", entry.get(key), f"reward {entry.name} has no parameter {key!r}",
                              f"its parameters: {allowed} (besides {', '.join(RESERVED)})")


def check_columns(ctx):
    data_cfg = OmegaConf.select(ctx.cfg, "data", default=None)
    if data_cfg is None:
        return
    have = set(data.columns_of(data_cfg))
    for label, entry in _entries(ctx.cfg):
        if entry.get("_target_"):
            fn, _ = import_target(entry._target_)
            if fn is None:
                continue
            needs = required_columns(fn, set(params_of(entry)))
        else:
            spec = SPECS.get(entry.get("name"))
            needs = list(spec.needs) if spec else []
        missing = [c for c in needs if c not in have]
        if missing:
            yield Problem(f"reward.{label}", entry.get("_target_") or entry.get("name"),
                          f"it reads the column{'s' * (len(missing) > 1)} {', '.join(missing)}, which data="
                          f"{data_cfg.name} does not have (its columns: {', '.join(sorted(have))})",
                          "pick data that has them (countdown has numbers and target), keep the field with "
                          "data.keep_fields=[...], map it with data.answer_field=..., or change the reward")


def check_reward_checks(ctx):
    rate = OmegaConf.select(ctx.cfg, "checks.max_reward_failure_rate", default=None)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        yield Problem("checks.max_reward_failure_rate", rate, "expected a share between 0 and 1",
                      "e.g. checks.max_reward_failure_rate=0.1 (stop when over 10% of completions make a reward raise)")
    samples = OmegaConf.select(ctx.cfg, "checks.reward_sanity_samples", default=None)
    if isinstance(samples, int) and not isinstance(samples, bool) and 0 < samples < 2:  # < 1: the range rule
        yield Problem("checks.reward_sanity_samples", samples, "the sanity check needs at least 2 rows (a wrong "
                      "answer comes from another row)", "set checks.reward_sanity_samples to 2 or more (16 is cheap)")


def _library() -> dict:
    from r1exp.rewards.library import (
        LIBRARY,  # light: functions only, math-verify loads on first call
    )

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



def reward_tags(ctx):
    """A reward's own tags (reward.<label>.tags, when it does not follow data.tags) are checked like data.tags; a
    value that is data.tags is reported once, there."""
    data_tags = configured(get(ctx.cfg, "data.tags"))
    for label, entry in _entries(ctx.cfg):
        value = configured(entry.get("tags"))
        if value is not None and value != data_tags:
            yield from tag_problems(value, f"reward.{label}.tags")


def looked_for(cfg) -> dict:
    """tag -> the rewards that look for it: a library reward's tag pairs (its own tags, else its function's
    defaults), every tag of a user's reward given `tags`. Rewards with malformed tags are left out (reward.tags)."""
    found: dict = {}
    rank: dict = {}     # the order a completion has them: reasoning open, close, answer open, close
    for label, entry in _entries(cfg):
        value = configured(entry.get("tags"))
        spec = SPECS.get(entry.get("name")) if not entry.get("_target_") else None
        parts = spec.tags if spec else (("think", "answer") if value is not None else ())
        if not parts or tag_problems(value, "tags"):
            continue
        tags = Tags.of(value) if value is not None else DEFAULT
        for i, part in enumerate(("think", "answer")):
            for j, tag in enumerate(getattr(tags, part) if part in parts else ()):
                found.setdefault(tag, []).append(str(label))
                rank.setdefault(tag, (i, j))
    return {tag: found[tag] for tag in sorted(found, key=rank.get)}


def prompt_names_tags(ctx):
    """The model is told the format in the system prompt; a prompt that never names a tag a reward looks for
    teaches nothing about it, and that reward stays near 0 (a warning: the prompt may be right and a tag a typo)."""
    prompt = get(ctx.cfg, "data.system_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return
    missing = {tag: labels for tag, labels in looked_for(ctx.cfg).items() if tag not in prompt}
    if not missing:
        return
    rewards = sorted({label for labels in missing.values() for label in labels})
    value = configured(get(ctx.cfg, "data.tags"))
    tags = DEFAULT if tag_problems(value, "data.tags") else Tags.of(value)
    example = (f", e.g. \"data.system_prompt='Think, then answer as {tags.describe()}.'\""
               if set(missing) <= set(tags.all) else "")
    yield Problem("data.system_prompt", prompt,
                  f"it does not name {', '.join(missing)}, which reward{'s' * (len(rewards) > 1)} "
                  f"{', '.join(rewards)} look{'s' * (len(rewards) == 1)} for: the model is not told the format it is "
                  "scored on", f"name {', '.join(missing)} in the prompt{example}; or make the rewards look for the "
                  "prompt's tags (+data.tags=..., reward.<label>.tags=...)", severity="warning")


RULES: list[Rule] = [
    Rule("reward.name", ("reward.*.name", "reward.*._target_"), reward_names,
         doc="at least one reward; each names a library reward or a _target_"),
    Rule("reward.weight", ("reward.*.weight",), reward_weights,
         doc="reward weights are finite numbers, not all zero"),
    Rule("reward.target", ("reward.*._target_",), check_target,
         doc="a user's reward imports, is callable and accepts completions and **kwargs"),
    Rule("reward.params", ("reward.*",), check_params,
         doc="library rewards get only parameters they have; sanity probes exist"),
    Rule("reward.columns", ("reward.*", "data.name", "data.keep_fields"), check_columns,
         doc="every column a reward reads exists in the data"),
    Rule("reward.tags", ("reward.*.tags",), reward_tags,
         doc="a reward's own tags are two pairs [open, close] of four different, non-empty tags"),
    Rule("reward.prompt_tags", ("data.system_prompt", "data.tags", "reward.*.tags"), prompt_names_tags,
         doc="the system prompt names every tag the rewards look for (warning)"),
    Rule("checks.reward", ("checks.max_reward_failure_rate", "checks.reward_sanity_samples"), check_reward_checks,
         doc="reward failure rate is a share; the sanity check has rows to compare"),
]
