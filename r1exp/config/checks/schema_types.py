"""Every r1exp key has the type, or one of the values, that conf/ documents (r1exp.config.schema.KEY_TYPES)."""

from __future__ import annotations

from omegaconf import OmegaConf

from r1exp.config.checks.common import ABSENT, get
from r1exp.config.schema import KEY_TYPES
from r1exp.errors import Problem


def type_name(expected) -> str:
    if isinstance(expected, list):
        return "one of " + ", ".join(map(str, expected))
    if isinstance(expected, tuple):
        return " or ".join(e if isinstance(e, str) else e.__name__ for e in expected)
    return expected.__name__


def matches(value, expected) -> bool:
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


def key_types(ctx):
    for spec, expected in KEY_TYPES.items():
        key, nullable = spec.rstrip("?"), spec.endswith("?")
        value = get(ctx.cfg, key, default=ABSENT)
        if value is ABSENT:
            continue  # keys an option does not have (engine.host for engine=hf) are not required
        if value is None and nullable:
            continue
        if not matches(value, expected):
            group = key.split(".")[0]
            yield Problem(key, value, f"expected {type_name(expected)}",
                          f"set {key} to {type_name(expected)} (see conf/{group}/)")
