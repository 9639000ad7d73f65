"""The memory plan: predicted peak memory per device for the trainer and the engine, from the config alone.

Trainer terms (GiB, per device), computed here: weights at the loaded precision (4-bit keeps embeddings and an
untied head in 16 bit); LoRA weights, gradients and AdamW state (fp32); activations of one micro-batch, with or
without gradient checkpointing; the log-prob head (TRL's chunked head when the installed TRL has it, else the
micro-batch's logits: vocab-sized and often the largest term); the CUDA context. The engine adds its own terms
and totals (`Engine.plan_memory`: a colocated vLLM's reservation and second weight copy, a server's GPUs, the KV
cache of `generate`), and the loader its own (`Loader.adjust_terms` for a training loop of its own,
`Loader.shares_engine_weights`, `Loader.sleeps_own_engine` for an engine it sleeps itself).

The constants are calibrated against measured peaks on the H200 (docs/benchmarks.md); `plan_memory` is a pure
function of (cfg, env, engine, loader), so that a benchmark can print prediction next to measurement
(`r1exp.components.plan_for` builds the engine and loader of a config for it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from omegaconf import DictConfig, OmegaConf

from r1exp.plan.sharding import GATHERED_LAYERS, Sharding, optimizer_bytes, sharding_of

GiB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BYTES = 0.53            # 4-bit NF4 + double-quantized block scales, per parameter
LORA_BYTES = 4 + 4 + 8      # fp32 adapter weights, their gradients, AdamW's two moments
CUDA_CONTEXT_GB = 0.6       # CUDA context + allocator slack in each process using the GPU
LOGIT_BYTES = 2 + 4 + 4     # unfused head: logits (16 bit) + fp32 log-softmax + its gradient, per vocab entry
FUSED_TOKENS, FUSED_VOCAB = 4096, 32768   # TRL's chunked log-prob head: one [tokens x vocab] fp32 tile at a time
ACT_FACTOR = 1.2            # calibrated on the H200 (docs/benchmarks.md): measured trainer peaks were 3-5 GiB
                            # above the uncalibrated plan at 0.5B and 7B; 1.2 puts every measured row within 15%


@dataclass
class MemoryPlan:
    device_gb: float | None            # memory of one GPU (None: no GPU planned)
    device: str = "cuda"               # cuda | cpu
    terms: dict = field(default_factory=dict)   # name -> GiB
    trainer_gb: float = 0.0
    engine_gb: float = 0.0
    total_gb: float = 0.0
    gpu_memory_utilization: float | None = None  # resolved value handed to the engine
    kv_cache_gb: float | None = None   # an explicit KV cache handed to the engine (None: what the fraction leaves)
    engine_need_gb: float = 0.0        # weights + KV cache for a whole generation batch + overhead
    engine_min_gb: float = 0.0         # weights + KV cache for one sequence + overhead: below this vLLM cannot start
    shared_weights: bool = False       # the loader's in-process engine generates with the trainer's own weights
    loader_sleeps_engine: bool = False  # the loader sleeps that engine itself while the trainer computes gradients
    utilization_ceiling: bool = False  # an explicit gpu_memory_utilization is a ceiling (lowered to what fits)
    max_model_len: int = 0
    prompt_tokens: int = 0
    generation_batch: int = 0
    sharding: dict = field(default_factory=dict)   # what the distributed strategy divides (r1exp.plan.sharding)
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
    from r1exp.grpo.fields import grpo_fields

    return grpo_fields().default(key, fallback)


def lora_params(arch, lora) -> int:
    """Adapter parameters: r x (in + out) for every linear module target_modules picks (names, "all-linear", a
    regex), in every layer (r1exp.models.architecture)."""
    from r1exp.models.architecture import lora_shapes, targeted

    shapes = lora_shapes(arch)
    picked = [name for name in targeted(arch, lora.target_modules) if name in shapes]
    per_layer = sum(int(lora.r) * sum(shapes[name]) for name in picked)
    return per_layer * int(arch.layers)


def kv_bytes_per_token(arch, dtype: str) -> int:
    hd = int(arch.get("head_dim") or int(arch.hidden) // int(arch.heads))
    return 2 * int(arch.layers) * int(arch.kv_heads) * hd * DTYPE_BYTES.get(dtype, 2)


def prompt_tokens(cfg) -> int:
    """The longest prompt in tokens (r1exp.data.prompts: given, measured on the data, or guessed)."""
    from r1exp.data.prompts import prompt_estimate

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


def layer_activations_gb(cfg, tokens: int, factor: float = ACT_FACTOR) -> float:
    """Saved activations of one layer for `tokens` tokens: ~8 hidden-sized tensors, q/k/v, and 4 intermediate-sized
    ones (SwiGLU MLP), times a calibrated factor."""
    arch = cfg.model.arch
    h, inter = int(arch.hidden), int(arch.intermediate)
    hd = int(arch.get("head_dim") or h // int(arch.heads))
    elem = DTYPE_BYTES.get(str(cfg.model.dtype), 2)
    return tokens * (8 * h + 2 * int(arch.kv_heads) * hd + 4 * inter) * elem * factor / GiB


def activations_gb(cfg, tokens: int) -> float:
    """Saved activations of one micro-batch: every layer's; with gradient checkpointing, each layer's input plus
    one layer redone."""
    arch = cfg.model.arch
    layers = int(arch.layers)
    per_layer = layer_activations_gb(cfg, tokens)
    if bool(trainer_value(cfg, "gradient_checkpointing", True)):
        return tokens * int(arch.hidden) * DTYPE_BYTES.get(str(cfg.model.dtype), 2) * layers / GiB + per_layer
    return per_layer * layers


def logprob_head_gb(cfg, micro: int, fused: bool) -> float:
    arch = cfg.model.arch
    scored = micro * (completion_tokens(cfg) + 1)
    if fused:
        tile = min(scored, FUSED_TOKENS) * min(int(arch.vocab), FUSED_VOCAB) * 4
        return (tile + scored * int(arch.hidden) * 4) / GiB
    return scored * int(arch.vocab) * LOGIT_BYTES / GiB


def sharded_weights_gb(cfg, shards: Sharding) -> float:
    """The weights one process holds: all of them, or its shard plus the layers gathered while computing."""
    weights = weights_gb(cfg)
    if shards.weights <= 1:
        return weights
    layers = int(cfg.model.arch.layers)
    return weights / shards.weights + weights * min(GATHERED_LAYERS, layers) / layers


def trained_state_terms(cfg, loader, shards: Sharding) -> dict:
    """What training adds to the weights, per process: an adapter's weights, gradients and AdamW state (fp32); or,
    training every weight (loader=full), gradients and optimizer states of the whole model, divided as the strategy
    shards them, and with beta > 0 a frozen reference copy of the weights."""
    arch = cfg.model.arch
    if loader.trains_adapter:
        return {"lora+optimizer": lora_params(arch, cfg.model.lora) * LORA_BYTES / GiB / shards.optimizer}
    params = float(arch.params)
    dtype_bytes = DTYPE_BYTES.get(str(cfg.model.dtype), 2)
    terms = {"gradients": params * dtype_bytes / GiB / shards.gradients,
             "optimizer": params * optimizer_bytes(cfg, shards, dtype_bytes) / GiB / shards.optimizer}
    if float(trainer_value(cfg, "beta", 0.0) or 0.0) > 0:
        terms["reference_model"] = sharded_weights_gb(cfg, shards)
    return terms


def plan_memory(cfg: DictConfig, env, engine, loader) -> MemoryPlan:
    """The plan of a run with this engine and loader (resolved once by the pre-flight, r1exp.components.Resolved).
    The loader says what it changes as plain values (its own training loop's terms, whether its engine shares the
    trainer's weights, whether it sleeps that engine); the engine adds its share and the totals."""
    from r1exp.machine.facts import planned_gpus
    from r1exp.grpo.fields import grpo_fields

    arch = cfg.model.arch
    on_cpu = planned_gpus(cfg, env, loader) == 0
    device_gb = None if on_cpu else (_get(cfg, "hardware.gpu_memory_gb") or (env.gpus[0] if env.gpus else None))
    plan = MemoryPlan(device_gb=float(device_gb) if device_gb else None, device="cpu" if on_cpu else "cuda",
                      max_model_len=max_model_len(cfg), prompt_tokens=prompt_tokens(cfg),
                      generation_batch=generation_batch(cfg))
    micro = int(trainer_value(cfg, "per_device_train_batch_size", 8))
    shards = sharding_of(cfg)
    plan.sharding = shards.as_dict()
    plan.terms = {"weights": sharded_weights_gb(cfg, shards), **trained_state_terms(cfg, loader, shards),
                  "activations": activations_gb(cfg, micro * sequence_tokens(cfg)),
                  "logprob_head": logprob_head_gb(cfg, micro, grpo_fields().fused_lm_head),
                  "cuda_context": 0.0 if on_cpu else CUDA_CONTEXT_GB}
    if shards.sharded:
        plan.notes.append(shards.describe())
    if loader.trains_adapter and float(trainer_value(cfg, "beta", 0.0) or 0.0) > 0:
        plan.notes.append("beta>0 with LoRA: the reference model is the base with the adapter disabled (no copy)")
    loader.adjust_terms(cfg, plan.terms, micro)
    plan.shared_weights = loader.shares_engine_weights(engine.in_process)
    plan.loader_sleeps_engine = plan.shared_weights and loader.sleeps_own_engine()
    plan.utilization_ceiling = loader.utilization_is_ceiling(engine.in_process)
    dynamic = plan.terms["activations"] + plan.terms["logprob_head"]
    static = sum(gb for name, gb in plan.terms.items() if name not in ("activations", "logprob_head"))
    engine.plan_memory(cfg, env, plan, static, dynamic)
    plan.notes += loader.plan_notes(cfg, plan)
    return plan
