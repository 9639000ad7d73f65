"""transformers + PEFT: the model is loaded here and TRL applies the LoRA config."""

from __future__ import annotations

from r1exp.loaders import Loaded


def lora_config(cfg):
    from peft import LoraConfig

    lora = cfg.model.lora
    return LoraConfig(r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def load(cfg, source: str) -> Loaded:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, str(cfg.model.dtype))
    kwargs = {"dtype": dtype}
    if cfg.loader.get("load_in_4bit"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model=model, tokenizer=tokenizer, peft_config=lora_config(cfg), path=source)
