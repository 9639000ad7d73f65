"""The post-build check: the engine the config asked for exists, is the one that will be used, and runs with the
settings the plan computed.

Runs after the trainer is built and before its first step (r1exp.run). Building is where a config and the
installed packages can silently disagree: TRL falls back to transformers' `generate` when told not to use vLLM,
Unsloth 2026.10 loaded without fast_inference lets TRL start a second vLLM engine instead of failing, vLLM takes
the model's whole context when a length does not reach it. What was built is read into `EngineFacts`; the chosen
engine's and loader's `built_rules` compare it with the config, and the engine's `settings_to_check` are compared
with what the built engine reports. Generic: it names no engine or loader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from r1exp.errors import Problem


@dataclass(frozen=True)
class EngineFacts:
    """What the built trainer and model will generate with."""

    uses_vllm: bool            # the trainer will call vLLM (GRPOTrainer.use_vllm)
    mode: str | None           # TRL's vllm_mode: colocate | server | None
    trainer_engine: object     # the vLLM engine TRL holds in this process (colocate), or None
    server_client: object      # TRL's client of a vLLM server, or None
    model_engine: object       # an engine a loader attached to the model (Unsloth's model.vllm_engine), or None
    continuous_batching: bool = False   # transformers' continuous batching generates (TRL)
    settings: dict = field(default_factory=dict)   # what the engine in use reports about itself



def engine_facts(trainer, model) -> EngineFacts:
    generation = getattr(trainer, "vllm_generation", None)  # TRL >= 1.x keeps its engine here
    engine = getattr(generation, "llm", None) if generation is not None else getattr(trainer, "llm", None)
    model_engine = _model_engine(model)
    uses_vllm = bool(getattr(trainer, "use_vllm", False))
    in_use = engine if engine is not None else model_engine
    return EngineFacts(
        uses_vllm=uses_vllm,
        mode=getattr(trainer, "vllm_mode", None) if uses_vllm else None,
        trainer_engine=engine,
        server_client=getattr(generation, "vllm_client", None) if generation is not None else None,
        model_engine=model_engine,
        continuous_batching=bool(getattr(trainer, "use_transformers_continuous_batching", False)),
        settings=vllm_settings(in_use) if uses_vllm and in_use is not None else {},
    )


def vllm_settings(llm) -> dict:
    """The settings a built `vllm.LLM` runs with, read back from its engine's config (None where unreadable)."""
    config = _vllm_config(llm)
    if config is None:
        return {}
    model, cache, sched, compilation = (getattr(config, k, None) for k in
                                        ("model_config", "cache_config", "scheduler_config", "compilation_config"))
    dtype = getattr(model, "dtype", None)
    return {
        "max_model_len": getattr(model, "max_model_len", None),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "enforce_eager": getattr(model, "enforce_eager", None),
        "gpu_memory_utilization": getattr(cache, "gpu_memory_utilization", None),
        "kv_cache_memory_bytes": getattr(cache, "kv_cache_memory_bytes", None),
        "num_gpu_blocks": getattr(cache, "num_gpu_blocks", None),
        "max_num_seqs": getattr(sched, "max_num_seqs", None),
        "max_num_batched_tokens": getattr(sched, "max_num_batched_tokens", None),
        "cudagraph_mode": str(getattr(compilation, "cudagraph_mode", None)),
        "compiled": _compiled(compilation),
    }


def _compiled(compilation):
    mode = getattr(compilation, "mode", None)   # vLLM's CompilationMode: 0 = no torch.compile
    return None if mode is None else int(mode) != 0


def _vllm_config(llm):
    engine = getattr(llm, "llm_engine", None)
    for holder in (engine, getattr(engine, "engine_core", None), getattr(engine, "processor", None)):
        config = getattr(holder, "vllm_config", None)
        if config is not None:
            return config
    return None


def _model_engine(model):
    """Unsloth attaches `vllm_engine` to the model (and keeps it reachable from the PEFT wrapper)."""
    for candidate in (model, getattr(model, "base_model", None), getattr(getattr(model, "base_model", None),
                                                                          "model", None)):
        engine = getattr(candidate, "vllm_engine", None) if candidate is not None else None
        if engine is not None:
            return engine
    return None


def check_built(cfg, facts: EngineFacts, engine, loader, expected: dict) -> list[Problem]:
    """Problems of the built trainer: the chosen components' rows, then the planned settings vs the built ones."""
    value = {"engine.name": engine.name, "loader.fast_inference": getattr(loader, "fast_inference", None)}
    problems = [Problem(rule.key, value.get(rule.key, rule.key), rule.why, rule.fix, rule=rule.id)
                for rule in (*engine.built_rules, *loader.built_rules) if rule.broken(cfg, facts)]
    return problems + settings_mismatches(expected, facts.settings)


def settings_mismatches(expected: dict, built: dict) -> list[Problem]:
    """One problem per planned engine setting that the built engine does not have (a value it cannot report is
    not a mismatch)."""
    out = []
    for name, want in expected.items():
        have = built.get(name)
        if have is None or want is None:
            continue
        # a fraction may come back adjusted (Unsloth turned 0.15 into 0.1491, 0.05 into 0.0485): within 0.01 (1.4 GiB
        # of an H200) it is the same setting; a wrong one is off by far more (TRL's default 0.3, Unsloth's own share)
        same = math.isclose(float(have), float(want), abs_tol=0.01) if isinstance(want, float) else have == want
        if not same:
            out.append(Problem(f"engine.{name}", have,
                               f"the built engine runs with {name}={have!r}, but the plan computed {want!r}: the "
                               "memory plan and the checks were made for other settings than the engine got",
                               "report this with the TRL and vLLM versions; until fixed, set the value explicitly "
                               f"(engine.{name}={want!r})", rule="check.engine.settings"))
    return out


def check_engine(run, built) -> list[Problem]:
    """The post-build check of `built` against the run's resolved components (r1exp.components.Resolved): the
    engine and loader the pre-flight chose, and the settings its plan computed."""
    facts = engine_facts(built.trainer, built.loaded.model)
    expected = run.engine.settings_to_check(run.cfg, run.plan, run.device) if run.plan is not None else {}
    return check_built(run.cfg, facts, run.engine, run.loader, expected)
