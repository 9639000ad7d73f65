"""engine=hf: the trainer generates with transformers' `generate` (conf/engine/hf.yaml). No engine is started;
the slowest option, and it works everywhere. Its memory is the KV cache of a whole generation batch."""

from __future__ import annotations

from typing import ClassVar

from omegaconf import DictConfig

from r1exp.engines.base import Engine
from r1exp.config.rule import BuiltRule


def generation_kv_cache(cfg: DictConfig, plan, static_gb: float, dynamic_gb: float) -> None:
    """Generating in the trainer: the KV cache of the whole generation batch, not held while training."""
    from r1exp.plan.memory import GiB, kv_bytes_per_token, sequence_tokens

    kv = plan.generation_batch * sequence_tokens(cfg) * kv_bytes_per_token(cfg.model.arch, str(cfg.model.dtype)) / GiB
    plan.terms["generation_kv_cache"] = kv
    plan.trainer_gb = static_gb + max(dynamic_gb, kv)
    plan.total_gb = plan.trainer_gb


class HFGenerate(Engine):
    built_rules: ClassVar[tuple] = (
        BuiltRule("check.engine.hf_no_vllm", "engine.name",
                  lambda cfg, facts: facts.uses_vllm or facts.trainer_engine is not None,
                  "engine=hf, but the trainer was built to generate with vLLM",
                  "report this: r1exp derived the wrong GRPOConfig (use_vllm must be false)"),
    )

    def plan_memory(self, cfg, env, plan, static_gb, dynamic_gb) -> None:
        generation_kv_cache(cfg, plan, static_gb, dynamic_gb)
