"""Unsloth's FastLanguageModel, with its own in-process vLLM engine when fast_inference is on.

Import order matters and is owned here: UNSLOTH_VLLM_STANDBY must be in the environment before `unsloth` is
imported, and `unsloth` must be imported before TRL, transformers and PEFT so that its patches apply
(`prepare_imports`, called by the run before anything heavy). With fast_inference=True the model carries
`model.vllm_engine` (also after get_peft_model); TRL then generates through it with the LoRA passed per request
(shared weights, no merge). The post-build check (r1exp.engines.check) verifies that.

On the H200 stack (torch 2.11, vLLM 0.26, Unsloth 2026.10.5) Unsloth's GRPO loop stalls under torch.compile: with
Unsloth's own compile off (UNSLOTH_COMPILE_DISABLE=1) the first step finished and the second did not within 90 s;
with TorchDynamo off as well it trains at ~1.9 s/step (bench/results/h200/). TORCHDYNAMO_DISABLE=1 in the
environment also stops vLLM from compiling its engine at start-up ("aot_compile is not supported"), so r1exp turns
dynamo off only after the engine is built. `loader.compile: true` leaves both on.
"""

from __future__ import annotations

import os

from r1exp.loaders import Loaded


def prepare_imports(cfg) -> None:
    if cfg.loader.get("standby"):
        os.environ["UNSLOTH_VLLM_STANDBY"] = "1"
    if not cfg.loader.get("compile", False):
        os.environ["UNSLOTH_COMPILE_DISABLE"] = "1"
    import unsloth  # noqa: F401  (patches transformers/TRL/PEFT on import)


def load(cfg, source: str) -> Loaded:
    prepare_imports(cfg)
    import torch
    from unsloth import FastLanguageModel

    loader, lora = cfg.loader, cfg.model.lora
    kwargs = dict(
        model_name=source,
        max_seq_length=int(cfg.model.max_seq_length),
        load_in_4bit=bool(loader.get("load_in_4bit", False)),
        fast_inference=bool(loader.get("fast_inference", False)),
        max_lora_rank=int(loader.get("max_lora_rank") or lora.r),
        dtype=getattr(torch, str(cfg.model.dtype)),
    )
    if kwargs["fast_inference"]:
        util = loader.get("gpu_memory_utilization")
        if util in (None, "auto"):  # without a value Unsloth takes its own default share of the GPU
            from r1exp.config.environment import detect
            from r1exp.config.plan import plan_memory

            util = plan_memory(cfg, detect()).gpu_memory_utilization
        if util is not None:
            kwargs["gpu_memory_utilization"] = float(util)
        if cfg.engine.get("max_model_len"):
            kwargs["max_model_len"] = int(cfg.engine.max_model_len)
    model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    model = FastLanguageModel.get_peft_model(
        model, r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
        target_modules=list(lora.target_modules),
        use_gradient_checkpointing="unsloth" if cfg.trainer.get("gradient_checkpointing") else False,
        random_state=int(cfg.seed),
    )
    if not cfg.loader.get("compile", False):
        torch._dynamo.config.disable = True  # after vLLM compiled its engine; see the module docstring
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model=model, tokenizer=tokenizer, peft_config=None, path=source)
