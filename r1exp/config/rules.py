"""The table of checks run before any weight is loaded. One Rule per mistake: id, keys read, check, fix.

A check takes a `Context` (cfg, env, dry_run) and yields `Problem`s. Add a rule by writing a small function and
a row in RULES; tests/test_validate.py holds a table of bad configurations, one or more per rule.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from r1exp.config.schema import KEY_TYPES
from r1exp.config.validate import Rule
from r1exp.errors import Problem


def _get(cfg, key, default=None):
    return OmegaConf.select(cfg, key, default=default)


def _type_name(expected) -> str:
    if isinstance(expected, list):
        return "one of " + ", ".join(map(str, expected))
    if isinstance(expected, tuple):
        return " or ".join(e if isinstance(e, str) else e.__name__ for e in expected)
    return expected.__name__


def _matches(value, expected) -> bool:
    if isinstance(expected, list):
        return value in expected
    options = expected if isinstance(expected, tuple) else (expected,)
    for option in options:
        if isinstance(option, str):
            if value == option:
                return True
        elif option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        elif option is list and OmegaConf.is_list(value):
            return True
        elif option is not list and isinstance(value, option) and not (option is int and isinstance(value, bool)):
            return True
    return False


def check_types(ctx):
    for spec, expected in KEY_TYPES.items():
        key, nullable = spec.rstrip("?"), spec.endswith("?")
        group = key.split(".")[0]
        missing = object()
        value = _get(ctx.cfg, key, default=missing)
        if value is missing:
            continue  # keys an option does not have (engine.host for engine=hf) are not required
        if value is None and nullable:
            continue
        if not _matches(value, expected):
            yield Problem(key, value, f"expected {_type_name(expected)}",
                          f"set {key} to {_type_name(expected)} (see conf/{group}/)", rule="schema.type")


RULES: list[Rule] = [
    Rule("schema.type", tuple(k.rstrip("?") for k in KEY_TYPES), check_types,
         doc="every r1exp key has the type or one of the values conf/ documents"),
]
