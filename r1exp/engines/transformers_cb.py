"""engine=transformers_cb: transformers' continuous batching in the trainer process (TRL's
`use_transformers_continuous_batching`, formerly `use_transformers_paged`): a paged KV cache and a scheduler over
the model the trainer holds, so no second copy of the weights and no weight sync, at `generate`'s accuracy.

Its KV cache is sized here from the memory plan (num_blocks x block_size tokens: the whole generation batch at
the planned max length). Left to itself, transformers sizes the cache from a share of the device's memory: on
CPU that took 103 s for a 16-prompt batch of the tiny model against 1.2 s with the planned size.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from omegaconf import DictConfig
from pydantic import Field

from r1exp.config.rule import Rule
from r1exp.engines.base import Engine
from r1exp.config.rule import BuiltRule
from r1exp.engines.hf import generation_kv_cache
from r1exp.errors import Problem
from r1exp.versions import Version

MIN_TRANSFORMERS = "5.8.0"   # TRL: continuous batching needs transformers>=5.8.0
MAX_BATCH_TOKENS = 4096      # tokens per forward pass of the scheduler, at most


def check_transformers(ctx):
    installed = ctx.env.versions.get("transformers")
    if installed and Version(installed.split("+")[0]) < Version(MIN_TRANSFORMERS):
        yield Problem("engine.name", ctx.engine.name,
                      f"transformers' continuous batching needs transformers>={MIN_TRANSFORMERS} (installed: {installed})",
                      f'pip install "transformers>={MIN_TRANSFORMERS}", or use engine=hf')


def check_dtype(ctx):
    """TRL's continuous-batching path casts the model in place to bfloat16 before generating when bf16 is on (its
    default), so a float32 model (the adapters included) is trained in bfloat16 from the first step."""
    from r1exp.plan.memory import trainer_value

    if str(ctx.cfg.model.dtype) == "float32" and trainer_value(ctx.cfg, "bf16", None) in (None, True) \
            and not trainer_value(ctx.cfg, "fp16", False):
        yield Problem("model.dtype", "float32",
                      "with bf16 on (TRL's default) TRL casts the model in place to bfloat16 before each continuous-"
                      "batching generation: the float32 model and its adapters would train in bfloat16",
                      "+trainer.bf16=false to keep float32, or model.dtype=bfloat16", severity="warning")


class TransformersCB(Engine):
    in_process: Literal[False] = False
    block_size: int = Field(32, ge=1, description="tokens per KV-cache block")
    num_blocks: int | None = Field(None, ge=1, description="KV-cache blocks; null = the plan's generation batch")
    max_batch_tokens: int | None = Field(None, ge=1, description="tokens per forward pass; null = from the plan")

    not_reproducible: ClassVar[str | None] = ("its scheduler batches requests by arrival and memory, and it was not "
                                              "verified to give the same tokens on a rerun")
    rules: ClassVar[tuple] = (
        Rule("engine.transformers_version", ("engine.name",), check_transformers, scope="machine",
             doc="continuous batching needs transformers>=5.8"),
        Rule("engine.cb_dtype", ("model.dtype", "trainer.bf16"), check_dtype,
             doc="TRL casts a float32 model to bfloat16 in place for continuous batching"),
    )
    built_rules: ClassVar[tuple] = (
        BuiltRule("check.engine.continuous_batching", "engine.name",
                  lambda cfg, facts: facts.uses_vllm or not facts.continuous_batching,
                  "the trainer was not built to generate with transformers' continuous batching",
                  "report this with the TRL version: use_transformers_continuous_batching must be true"),
    )

    def cache(self, plan) -> dict:
        """ContinuousBatchingConfig arguments: a cache that holds the whole generation batch."""
        tokens = plan.generation_batch * plan.max_model_len
        blocks = self.num_blocks or math.ceil(tokens / self.block_size) + 1
        return {"block_size": self.block_size, "num_blocks": blocks,
                "max_batch_tokens": self.max_batch_tokens or max(self.block_size, min(MAX_BATCH_TOKENS, tokens))}

    def plan_memory(self, cfg, env, plan, static_gb, dynamic_gb) -> None:
        generation_kv_cache(cfg, plan, static_gb, dynamic_gb)

    def grpo_args(self, cfg: DictConfig, plan, device: str) -> dict:
        return {"use_vllm": False, "use_transformers_continuous_batching": True,
                "transformers_continuous_batching_config": self.cache(plan)}

    def build_context(self, cfg: DictConfig, plan, device: str, log=print):
        import logging

        logging.getLogger("ContinuousBatchingLogger").setLevel(logging.WARNING)  # a line per step otherwise
        return super().build_context(cfg, plan, device, log)

    def describe(self, cfg: DictConfig, plan) -> str:
        cache = self.cache(plan)
        return f"{self.name} KV cache {cache['num_blocks']} x {cache['block_size']} tokens"
