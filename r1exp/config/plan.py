"""The memory plan: predicted peak memory per GPU for the trainer and the engine, from the config alone.

Terms (GiB, per device): weights at the loaded precision; LoRA weights, gradients and AdamW state; activations
of one micro-batch (with or without gradient checkpointing); the logits of the micro-batch (vocab-sized, often the
largest term in GRPO); the engine's share (vLLM reserves gpu_memory_utilization x GPU memory, holding its own copy
of the weights with TRL colocate, or the same weights with Unsloth fast_inference) and the CUDA context.
`engine.gpu_memory_utilization: auto` is resolved here from the engine's need. The coefficients are checked against
measured peaks on an H200 (bench/results/).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

GiB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CUDA_CONTEXT_GB = 0.6       # CUDA context + allocator slack in each process using the GPU
VLLM_OVERHEAD_GB = 1.5      # vLLM activations, sampler and CUDA graphs beyond weights and KV cache
ACT_BYTES_PER_TOKEN_LAYER = 34   # x hidden, bf16, no recomputation (Korthikanti et al. 2022)
LOGIT_BYTES = 2 + 4 + 4     # logits (model dtype) + fp32 log-softmax + its gradient, per vocab entry per token
UTIL_STEP = 0.05


@dataclass
class MemoryPlan:
    device_gb: float | None            # memory of one GPU (None: unknown / CPU)
    terms: dict = field(default_factory=dict)   # name -> GiB
    trainer_gb: float = 0.0
    engine_gb: float = 0.0
    total_gb: float = 0.0
    gpu_memory_utilization: float | None = None  # resolved value handed to the engine
    engine_need_gb: float = 0.0
    shared_weights: bool = False
    notes: list = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.device_gb is None or self.total_gb <= self.device_gb

    def as_dict(self) -> dict:
        return asdict(self)


def lora_params(arch, lora) -> int:
    h, heads, kv = int(arch.hidden), int(arch.heads), int(arch.kv_heads)
    hd = int(arch.get("head_dim") or h // heads)
    inter = int(arch.intermediate)
    shapes = {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    per_layer = sum(int(lora.r) * (i + o) for name, (i, o) in shapes.items() if name in set(lora.target_modules))
    return per_layer * int(arch.layers)


def kv_bytes_per_token(arch, dtype: str) -> int:
    hd = int(arch.get("head_dim") or int(arch.hidden) // int(arch.heads))
    return 2 * int(arch.layers) * int(arch.kv_heads) * hd * DTYPE_BYTES.get(dtype, 2)


def prompt_tokens(cfg) -> int:
    """A generous estimate of the longest prompt in tokens (about 3.5 characters a token, plus template)."""
    if cfg.data.get("max_prompt_tokens"):
        return int(cfg.data.max_prompt_tokens)
    system = len(str(cfg.data.get("system_prompt") or ""))
    question = {"arithmetic": 24, "countdown": 120}.get(str(cfg.data.name), 1200)
    return int(math.ceil((system + question) / 3.5)) + 16


def sequence_tokens(cfg) -> int:
    return prompt_tokens(cfg) + int(cfg.trainer.max_completion_length)


def generation_batch(cfg) -> int:
    t = cfg.trainer
    if t.get("generation_batch_size"):
        return int(t.generation_batch_size)
    steps = t.get("steps_per_generation") or t.get("gradient_accumulation_steps", 1)
    return int(t.per_device_train_batch_size) * int(steps)


def max_model_len(cfg) -> int:
    if cfg.engine.get("max_model_len"):
        return int(cfg.engine.max_model_len)
    return int(math.ceil(sequence_tokens(cfg) / 64) * 64)


def plan_memory(cfg, env) -> MemoryPlan:
    arch, t = cfg.model.arch, cfg.trainer
    dtype = str(cfg.model.dtype)
    device_gb = cfg.hardware.get("gpu_memory_gb") or (env.gpus[0] if env.gpus else None)
    params = float(arch.params)
    four_bit = bool(cfg.loader.get("load_in_4bit"))
    weight_bytes = 0.55 if four_bit else DTYPE_BYTES.get(dtype, 2)
    weights = params * weight_bytes / GiB
    lora = lora_params(arch, cfg.model.lora)
    lora_gb = lora * (4 + 4 + 8) / GiB   # fp32 weights, grads, AdamW moments
    micro = int(t.per_device_train_batch_size)
    seq = sequence_tokens(cfg)
    tokens = micro * seq
    act_per_layer = tokens * int(arch.hidden) * ACT_BYTES_PER_TOKEN_LAYER / GiB
    if t.get("gradient_checkpointing"):
        activations = tokens * int(arch.hidden) * 2 * int(arch.layers) / GiB + act_per_layer
    else:
        activations = act_per_layer * int(arch.layers)
    logits = tokens * int(arch.vocab) * LOGIT_BYTES / GiB
    ref = weights if float(t.get("beta", 0.0) or 0.0) > 0 else 0.0  # PEFT's reference = adapter disabled: no copy
    terms = {"weights": weights, "lora+optimizer": lora_gb, "activations": activations, "logits": logits,
             "cuda_context": CUDA_CONTEXT_GB}
    plan = MemoryPlan(device_gb=device_gb, terms=terms)
    if ref:
        plan.notes.append("beta>0 with LoRA: the reference model is the base with the adapter disabled (no copy)")
    trainer = sum(terms.values())
    engine_name = cfg.engine.name
    if engine_name == "vllm":
        shared = cfg.loader.name == "unsloth" and bool(cfg.loader.get("fast_inference"))
        plan.shared_weights = shared
        kv = generation_batch(cfg) * max_model_len(cfg) * kv_bytes_per_token(arch, dtype) / GiB
        engine_weights = weights if not shared else 0.0
        need = (weights if shared else engine_weights) + kv + VLLM_OVERHEAD_GB
        plan.engine_need_gb = need
        plan.terms["engine_kv_cache"] = kv
        util = cfg.engine.get("gpu_memory_utilization")
        if util == "auto" or util is None:
            util = _auto_utilization(need, device_gb)
        plan.gpu_memory_utilization = float(util) if util is not None else None
        if device_gb and plan.gpu_memory_utilization:
            plan.engine_gb = plan.gpu_memory_utilization * device_gb
        else:
            plan.engine_gb = need
        if shared:
            trainer -= weights  # the engine's share holds the weights the trainer uses
            plan.notes.append("Unsloth fast_inference: trainer and engine share one copy of the weights")
        else:
            plan.notes.append("TRL colocate: the engine holds a second copy of the (merged) weights")
    plan.trainer_gb = trainer
    plan.total_gb = trainer + plan.engine_gb
    return plan


def _auto_utilization(need_gb: float, device_gb: float | None) -> float | None:
    if not device_gb:
        return None
    return min(0.95, math.ceil((need_gb * 1.1) / device_gb / UTIL_STEP) * UTIL_STEP)
