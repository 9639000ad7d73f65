"""Building TRL's colocate engine with the vLLM arguments GRPOConfig has no field for.

TRL (1.15 on the GPU stack, 1.16 here) builds `vllm.LLM(...)` itself in `trl.generation.vllm_generation` with a
fixed set of keyword arguments: the trainer's compute dtype (vLLM's `auto` turns float32 into bfloat16 even for a
float32 trainer), `enforce_eager` and
an explicit KV-cache size (`kv_cache_memory_bytes`, the only way to size vLLM's cache on CPU without counting the
trainer's memory) are not among them. While the trainer is
built, `engine_build(...)` points that module's `LLM` name at a thin subclass that adds them, and restores it
afterwards. A TRL whose module no longer has an `LLM` name stops with an error naming the TRL version, so a
change upstream cannot silently drop the settings. On CPU it also applies the weight-sync patch
(`r1exp.engines.vllm_cpu`) before the engine loads its weights.
"""

from __future__ import annotations

import contextlib

from r1exp.errors import ConfigError, Problem

TRL_ENGINE_MODULE = "trl.generation.vllm_generation"


def _trl_version() -> str:
    from importlib.metadata import version

    return version("trl")


def _with_defaults(llm_cls, extra: dict):
    class LLMWithR1expSettings(llm_cls):
        """vllm.LLM with r1exp's engine settings (explicit arguments from TRL win)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**extra, **kwargs})

    LLMWithR1expSettings.r1exp_settings = dict(extra)
    return LLMWithR1expSettings


@contextlib.contextmanager
def llm_kwargs_for_trl(extra: dict):
    """Inside the block, TRL's colocate engine is built as `LLM(**extra, **trl_kwargs)`."""
    import importlib

    module = importlib.import_module(TRL_ENGINE_MODULE)
    original = getattr(module, "LLM", None)
    if original is None:
        raise ConfigError([Problem(
            "engine.name", "vllm",
            f"TRL {_trl_version()} no longer builds its engine as {TRL_ENGINE_MODULE}.LLM, so r1exp cannot pass "
            f"{', '.join(sorted(extra))} to it",
            "install the TRL version of the r1exp stack (README), or remove those engine settings",
            rule="engine.trl.llm_kwargs")])
    module.LLM = _with_defaults(original, extra)
    try:
        yield
    finally:
        module.LLM = original


@contextlib.contextmanager
def engine_build(settings, log=print):
    """The context in which GRPOTrainer is built: CPU patch + environment, and TRL's LLM call completed."""
    if not (settings.uses_vllm and settings.colocate):
        yield
        return
    if settings.device == "cpu":
        from r1exp.engines.vllm_cpu import prepare_cpu_engine

        prepare_cpu_engine(log=log)
    if not settings.llm_kwargs:
        yield
        return
    with llm_kwargs_for_trl(settings.llm_kwargs):
        yield
