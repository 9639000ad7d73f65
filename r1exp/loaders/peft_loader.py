"""loader=peft: transformers loads the model, TRL applies the LoRA config (conf/loader/peft.yaml).

With an in-process vLLM engine (TRL colocate), the engine holds a second, merged copy of the weights. It trains with
TRL's GRPOTrainer, less TRL's extra log-prob pass when the run is on-policy (`reuse_training_logps`,
r1exp/patches/trl_on_policy.py).
"""

from __future__ import annotations

from typing import ClassVar

from omegaconf import DictConfig

from r1exp.config.rule import Rule
from r1exp.errors import Problem
from r1exp.loaders.base import Loaded, Loader, lora_target_modules


def lora_config(cfg: DictConfig):
    from peft import LoraConfig

    lora = cfg.model.lora
    return LoraConfig(r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
                      target_modules=lora_target_modules(cfg), task_type="CAUSAL_LM")


def check_four_bit(ctx):
    if not ctx.loader.load_in_4bit:
        return
    if not ctx.env.has_cuda:
        yield Problem("loader.load_in_4bit", True, "4-bit loading (bitsandbytes) needs a CUDA GPU",
                      "drop loader.load_in_4bit on this machine, or run on a GPU")
    elif "bitsandbytes" not in ctx.env.versions:
        yield Problem("loader.load_in_4bit", True, "4-bit loading with loader=peft needs bitsandbytes",
                      "pip install bitsandbytes")


class PeftLoader(Loader):
    on_policy_trainer: ClassVar[str | None] = "r1exp.patches.trl_on_policy"
    on_policy_patch: ClassVar[str | None] = "trl_on_policy"
    rules: ClassVar[tuple] = (
        Rule("loader.4bit", ("loader.load_in_4bit",), check_four_bit, scope="machine",
             doc="4-bit loading needs CUDA and bitsandbytes"),
    )

    def load(self, cfg: DictConfig, source: str, plan=None, engine_context=None) -> Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = getattr(torch, str(cfg.model.dtype))
        kwargs = {"dtype": dtype}
        if self.load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = self.finish_tokenizer(cfg, AutoTokenizer.from_pretrained(source))
        return Loaded(model=model, tokenizer=tokenizer, peft_config=self.adapter_config(cfg), path=source)

    def adapter_config(self, cfg: DictConfig):
        """The LoRA config TRL applies to the model."""
        return lora_config(cfg)
