"""Inference engines: `cfg.engine` mapped to the arguments TRL's GRPOConfig and vLLM's `LLM` take.

engine=hf      -> use_vllm=False: the trainer generates with transformers, no engine is started.
engine=vllm    -> TRL colocate mode: TRL builds `vllm.LLM` in the trainer process. GRPOConfig carries tensor
                  parallelism, memory fraction, max_model_len and sleep mode; what it lacks (the trainer's compute
                  dtype, enforce_eager, an explicit KV-cache size) reaches `LLM` through `r1exp.engines.colocate`.
engine=vllm_server -> TRL server mode against `trl vllm-serve` (launched or attached by `r1exp.engines.server`).

Memory on CPU. vLLM's CPU worker reads gpu_memory_utilization as a fraction of the NUMA node's memory that must
cover the whole trainer process (its RSS counts), and then fills what is left with KV cache. So on CPU
`auto` means an explicit KV cache (vLLM's `kv_cache_memory_bytes`) of the size the memory plan gives
(`r1exp.config.plan`: the generation batch's need with headroom); `engine.kv_cache_gb` sets it by hand; a float
keeps vLLM's own meaning (a fraction of the node). The plan decides the sizes; this module only maps them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GiB = 1024**3
CPU_KV_MIN_BYTES = 64 * 1024**2   # vLLM needs room for at least one block per layer; keep a floor


@dataclass
class EngineSettings:
    grpo_args: dict                                  # GRPOConfig keyword arguments
    llm_kwargs: dict = field(default_factory=dict)   # extra vllm.LLM keyword arguments (colocate only)
    device: str = "cpu"

    @property
    def uses_vllm(self) -> bool:
        return bool(self.grpo_args.get("use_vllm"))

    @property
    def colocate(self) -> bool:
        return self.grpo_args.get("vllm_mode") == "colocate"


def engine_settings(cfg, plan, device: str) -> EngineSettings:
    """The GRPOConfig and vLLM arguments for cfg.engine on `device` ('cpu' or 'cuda'), sized by the memory plan."""
    engine = cfg.engine
    if engine.name == "hf":
        return EngineSettings({"use_vllm": False}, device=device)
    args = {"use_vllm": True, "vllm_tensor_parallel_size": int(engine.get("tensor_parallel_size") or 1)}
    if engine.get("max_model_len"):
        args["vllm_max_model_length"] = int(engine.max_model_len)
    if engine.name == "vllm_server":
        args.update(vllm_mode="server", vllm_server_host=str(engine.host), vllm_server_port=int(engine.port),
                    vllm_server_timeout=float(engine.get("timeout_s") or 240))
        return EngineSettings(args, device=device)
    args["vllm_mode"] = "colocate"
    args["vllm_enable_sleep_mode"] = bool(engine.get("sleep_mode", False))
    llm_kwargs = {"dtype": compute_dtype(cfg)}
    if engine.get("enforce_eager"):
        llm_kwargs["enforce_eager"] = True
    util = engine.get("gpu_memory_utilization")
    if device == "cpu":
        kv_bytes = cpu_kv_cache_bytes(cfg, plan)
        if kv_bytes is not None:
            llm_kwargs["kv_cache_memory_bytes"] = kv_bytes
        if util not in (None, "auto"):
            args["vllm_gpu_memory_utilization"] = float(util)
    elif plan.gpu_memory_utilization is not None:
        args["vllm_gpu_memory_utilization"] = float(plan.gpu_memory_utilization)
    return EngineSettings(args, llm_kwargs, device=device)


def compute_dtype(cfg) -> str:
    """The dtype the trainer computes in, which the engine samples in too: TRL autocasts to bfloat16 unless
    trainer.bf16=false (its default is bf16 when fp16 is off), else the model's own dtype. vLLM's `auto` would turn
    a float32 model into bfloat16 even for a float32 trainer (log-probs ~1e-2 apart on the tiny model, 1e-6 when
    both compute in float32); in bfloat16 vLLM generates 2.5x faster on CPU (25M model: 0.20 s vs 0.49 s)."""
    from r1exp.config.plan import trainer_value

    if trainer_value(cfg, "fp16", False):
        return "float16"
    bf16 = trainer_value(cfg, "bf16", None)
    return "bfloat16" if bf16 is None or bf16 else str(cfg.model.dtype)


def cpu_kv_cache_bytes(cfg, plan) -> int | None:
    """KV cache on CPU: engine.kv_cache_gb, else (gpu_memory_utilization=auto) the plan's KV-cache term, else
    None (a float gpu_memory_utilization: vLLM sizes the cache from its fraction of the NUMA node)."""
    engine = cfg.engine
    if engine.get("kv_cache_gb") is not None:
        return int(float(engine.kv_cache_gb) * GiB)
    if engine.get("gpu_memory_utilization") not in (None, "auto"):
        return None
    return max(CPU_KV_MIN_BYTES, int(math.ceil(float(plan.terms.get("engine_kv_cache", 0.0)) * GiB)))


def grpo_engine_args(cfg, plan, device: str) -> dict:
    """GRPOConfig keyword arguments for cfg.engine (use_vllm, vllm_mode and the vllm_* sizing keys)."""
    return engine_settings(cfg, plan, device).grpo_args
