"""The vLLM engine TRL builds (and the one Unsloth builds) gets r1exp's engine settings: `trl.generation.
vllm_generation.LLM` (and `vllm.LLM` while Unsloth builds its engine) is replaced, inside a block, by a subclass
whose constructor adds them.

Why: GRPOConfig has no field for the engine's dtype (vLLM's "auto" would turn a float32 trainer into bfloat16),
eager mode, compile mode, an explicit KV cache (`kv_cache_memory_bytes`, the only way to size it on CPU) or batch
limits, and TRL's `max_num_batched_tokens=4096` can exceed what the engine's sequences hold (vLLM's warm-up then ran
a batch no request makes and died on the H200). Unsloth picks its own `max_num_seqs`, compiles with Inductor and
adjusts the memory fraction. The post-build check (r1exp.checks.built) reads every setting back from the built
engine. Verified on the versions in r1exp.patches.PATCHES["trl_vllm_llm"]; switch: engine=hf or engine=vllm_server.
"""

from __future__ import annotations

import contextlib

from r1exp.errors import ConfigError, Problem

TRL_ENGINE_MODULE = "trl.generation.vllm_generation"


def _trl_version() -> str:
    from importlib.metadata import version

    return version("trl")


def _with_defaults(llm_cls, extra: dict, overrides: dict, seed: int | None = None):
    class LLMWithR1expSettings(llm_cls):
        """vllm.LLM with r1exp's engine settings: `extra` where TRL passes nothing, `overrides` over TRL's; with
        `seed`, the run's seed added to the seed TRL gives (TRL seeds its colocated engine with the process's index
        alone, so every run sampled alike whatever its seed; the index keeps tensor-parallel workers together)."""

        def __init__(self, *args, **kwargs):
            kwargs = {**extra, **kwargs, **overrides}
            if seed is not None:
                kwargs["seed"] = seed + int(kwargs.get("seed") or 0)
            super().__init__(*args, **kwargs)

    LLMWithR1expSettings.r1exp_settings = {**extra, **overrides, **({"seed": seed} if seed is not None else {})}
    return LLMWithR1expSettings


@contextlib.contextmanager
def llm_class_with(module, extra: dict, overrides: dict, seed: int | None = None):
    """Inside the block, `module.LLM(...)` builds `LLM(**extra, **its_kwargs, **overrides)` (seeded by `seed`)."""
    original = module.LLM
    module.LLM = _with_defaults(original, extra, overrides, seed)
    try:
        yield
    finally:
        module.LLM = original


def llm_kwargs_for_trl(extra: dict, overrides: dict | None = None, seed: int | None = None):
    """Inside the block, TRL's colocate engine is built as `LLM(**extra, **trl_kwargs, **overrides)`, its seed the
    run's plus TRL's."""
    import importlib

    module = importlib.import_module(TRL_ENGINE_MODULE)
    if getattr(module, "LLM", None) is None:
        raise ConfigError([Problem(
            "engine.name", "vllm",
            f"TRL {_trl_version()} no longer builds its engine as {TRL_ENGINE_MODULE}.LLM, so r1exp cannot pass "
            f"{', '.join(sorted(extra))} to it",
            "install the TRL version of the r1exp stack (pyproject.toml extras, docs/gpu.md), or remove those engine settings",
            rule="engine.trl.llm_kwargs")])
    return llm_class_with(module, extra, overrides or {}, seed)
