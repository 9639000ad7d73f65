"""A tool as TRL calls it: the configured function, its YAML settings bound, a time limit per call.

TRL shows the model a tool's name, typed arguments and docstring (transformers' `get_json_schema`) and calls it with
the arguments the model wrote. `conf/tools/<label>.yaml` names the function (`_target_`); its other keys are
keyword arguments r1exp binds (the model neither sees nor sets them) except `time_limit_s`, which r1exp applies:
a call running longer is abandoned and raises `ToolTimeout`, which TRL reports to the model as the tool's error and
counts in `tools/failure_frequency`. The wrapper keeps the function's name, docstring and the signature of the
arguments the model fills, so TRL's schema is the function's own.
"""

from __future__ import annotations

import functools
import inspect
import threading

RESERVED = ("_target_", "time_limit_s", "probe")   # probe: arguments the pre-flight calls the tool with
OWN_LIMIT_SLACK_S = 2.0


class ToolTimeout(TimeoutError):
    """A tool call ran past its time limit."""


def settings_of(entry) -> dict:
    """The keyword arguments a tool's YAML binds (every key but `_target_` and `time_limit_s`)."""
    return {k: v for k, v in dict(entry).items() if k not in RESERVED}


def environment_settings(entry) -> dict:
    """The keyword arguments an environment's YAML gives its class (every key but `_target_` and `name`)."""
    return {k: v for k, v in dict(entry).items() if k not in ("_target_", "name")}


def model_parameters(fn, bound: dict) -> list[inspect.Parameter]:
    """The parameters the model fills: the function's, less those the YAML binds."""
    return [p for name, p in inspect.signature(fn).parameters.items() if name not in bound]


def bind(fn, settings: dict, time_limit_s: float | None):
    """`fn` with `settings` bound and a time limit per call, looking like `fn` to TRL (name, docstring, signature).
    A function with a `time_limit_s` parameter of its own gets the limit and enforces it (a subprocess it kills);
    the wrapper then waits a little longer before it gives up on the call."""
    if time_limit_s and "time_limit_s" in inspect.signature(fn).parameters:
        settings = {**settings, "time_limit_s": time_limit_s}
        time_limit_s = time_limit_s + OWN_LIMIT_SLACK_S
    visible = [p for p in model_parameters(fn, settings) if p.name not in RESERVED]   # r1exp's keys, never the model's

    name = getattr(fn, "__name__", type(fn).__name__)

    def call(*args, **kwargs):
        return run_limited(functools.partial(fn, **settings), args, kwargs, time_limit_s, name)

    functools.update_wrapper(call, fn)
    del call.__wrapped__  # inspect.signature would follow it back to the bound arguments
    call.__signature__ = inspect.signature(fn).replace(parameters=visible)
    shown = {p.name for p in visible} | {"return"}
    call.__annotations__ = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k in shown}
    call.r1exp_tool = {"target": f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', name)}",
                       "time_limit_s": time_limit_s}
    return call


def run_limited(fn, args, kwargs, time_limit_s, name: str):
    """fn(*args, **kwargs), abandoned after time_limit_s: a daemon thread, since a thread cannot be stopped. A tool
    that must be stopped for good (code it runs) enforces its own limits (r1exp/tools/python.py)."""
    if not time_limit_s:
        return fn(*args, **kwargs)
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=target, name=f"tool:{name}", daemon=True)
    worker.start()
    worker.join(time_limit_s)
    if worker.is_alive():
        raise ToolTimeout(f"tool {name} took longer than {time_limit_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
