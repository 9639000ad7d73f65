"""The post-build check: the engine the config asked for exists and is the one that will be used.

Runs after the trainer is built and before its first step (r1exp.run). Building is where a config and the
installed packages can silently disagree: TRL falls back to transformers' `generate` when told not to use vLLM,
Unsloth 2026.10 loaded without fast_inference lets TRL start a second vLLM engine (a second copy of the weights)
instead of failing, an Unsloth model loaded with fast_inference carries an engine that engine=hf never uses.
What was built is read into `EngineFacts`; each rule of `RULES` compares it with the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from r1exp.errors import Problem


@dataclass(frozen=True)
class EngineFacts:
    """What the built trainer and model will generate with."""

    uses_vllm: bool            # the trainer will call vLLM (GRPOTrainer.use_vllm)
    mode: str | None           # TRL's vllm_mode: colocate | server | None
    trainer_engine: object     # the vLLM engine TRL holds in this process (colocate), or None
    server_client: object      # TRL's client of a vLLM server, or None
    model_engine: object       # the engine Unsloth attached to the model (model.vllm_engine), or None


def engine_facts(trainer, model) -> EngineFacts:
    generation = getattr(trainer, "vllm_generation", None)  # TRL >= 1.x keeps its engine here
    engine = getattr(generation, "llm", None) if generation is not None else getattr(trainer, "llm", None)
    return EngineFacts(
        uses_vllm=bool(getattr(trainer, "use_vllm", False)),
        mode=getattr(trainer, "vllm_mode", None) if getattr(trainer, "use_vllm", False) else None,
        trainer_engine=engine,
        server_client=getattr(generation, "vllm_client", None) if generation is not None else None,
        model_engine=_model_engine(model),
    )


def _model_engine(model):
    """Unsloth attaches `vllm_engine` to the model (and keeps it reachable from the PEFT wrapper)."""
    for candidate in (model, getattr(model, "base_model", None), getattr(getattr(model, "base_model", None),
                                                                          "model", None)):
        engine = getattr(candidate, "vllm_engine", None) if candidate is not None else None
        if engine is not None:
            return engine
    return None


@dataclass(frozen=True)
class EngineRule:
    id: str
    key: str
    applies: Callable[[object], bool]            # cfg -> bool
    broken: Callable[[object, EngineFacts], bool]  # (cfg, facts) -> True when the built trainer is wrong
    why: str
    fix: str


def _unsloth_fast(cfg) -> bool:
    return cfg.loader.name == "unsloth" and bool(cfg.loader.get("fast_inference"))


RULES = (
    EngineRule("check.engine.hf_no_vllm", "engine.name", lambda c: c.engine.name == "hf",
               lambda c, f: f.uses_vllm or f.trainer_engine is not None,
               "engine=hf, but the trainer was built to generate with vLLM",
               "report this: r1exp derived the wrong GRPOConfig (use_vllm must be false)"),
    EngineRule("check.engine.hf_unused_engine", "loader.fast_inference", lambda c: c.engine.name == "hf",
               lambda c, f: f.model_engine is not None,
               "engine=hf, but the model carries a vLLM engine (Unsloth fast_inference) that will never be used and "
               "holds its memory", "drop the loader.fast_inference override, or use engine=vllm"),
    EngineRule("check.engine.vllm_missing", "engine.name", lambda c: c.engine.name in ("vllm", "vllm_server"),
               lambda c, f: not f.uses_vllm,
               "the trainer will generate with transformers, not vLLM",
               "check that vLLM imports here (python -c 'import vllm'), or use engine=hf"),
    EngineRule("check.engine.colocate_engine", "engine.name", lambda c: c.engine.name == "vllm",
               lambda c, f: f.uses_vllm and (f.mode != "colocate" or f.trainer_engine is None),
               "engine=vllm, but the trainer holds no in-process vLLM engine (TRL vllm_mode=colocate)",
               "report this with the TRL version: r1exp found no engine at trainer.vllm_generation.llm"),
    EngineRule("check.engine.server_client", "engine.name", lambda c: c.engine.name == "vllm_server",
               lambda c, f: f.uses_vllm and (f.mode != "server" or f.trainer_engine is not None),
               "engine=vllm_server, but the trainer started an engine of its own instead of using the server",
               "report this with the TRL version: the trainer must be built with vllm_mode=server"),
    EngineRule("check.unsloth.engine", "loader.fast_inference", _unsloth_fast,
               lambda c, f: f.model_engine is None,
               "the Unsloth model has no vllm_engine after loading with fast_inference=true",
               "check that vLLM is installed for Unsloth (README, GPU install), or use engine=hf"),
    EngineRule("check.unsloth.second_engine", "loader.fast_inference", _unsloth_fast,
               lambda c, f: f.model_engine is not None and f.trainer_engine is not None
               and f.trainer_engine is not f.model_engine,
               "TRL started a second vLLM engine next to Unsloth's model.vllm_engine: two copies of the weights",
               "import Unsloth before TRL (r1exp's unsloth loader does), and use the TRL version Unsloth supports"),
)


def check_engine(cfg, built) -> list[Problem]:
    facts = engine_facts(built.trainer, built.loaded.model)
    value = {"engine.name": cfg.engine.name, "loader.fast_inference": cfg.loader.get("fast_inference")}
    return [Problem(rule.key, value[rule.key], rule.why, rule.fix, rule=rule.id)
            for rule in RULES if rule.applies(cfg) and rule.broken(cfg, facts)]
