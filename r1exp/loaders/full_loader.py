"""loader=full: full fine-tuning, every weight trained, no adapter (open-r1's recipes and TRL's examples train so).

transformers loads the model, TRL's GRPOTrainer trains all of it. The plan counts gradients and optimizer states of
the whole model (divided as ZeRO or FSDP shard them, r1exp.plan.sharding) and, with beta > 0, TRL's frozen reference
copy of the weights. An in-process vLLM engine holds its own copy and TRL loads the updated weights into it after
each optimizer step, as with LoRA (there is nothing to merge).
"""

from __future__ import annotations

from typing import ClassVar

from omegaconf import DictConfig

from r1exp.config.rule import Rule
from r1exp.errors import Problem
from r1exp.loaders.peft_loader import PeftLoader, check_four_bit


def no_four_bit(ctx):
    if ctx.loader.load_in_4bit:
        yield Problem("loader.load_in_4bit", True, "full fine-tuning trains every weight, and 4-bit weights cannot be "
                      "trained (bitsandbytes' 4-bit layers have no gradient of their own)",
                      "drop loader.load_in_4bit, or train an adapter on the 4-bit model: loader=peft "
                      "loader.load_in_4bit=true (QLoRA)")


def lr_for_full(ctx):
    """Full fine-tuning uses rates about ten times lower than LoRA (open-r1: 1e-6 to 3e-6; TRL's docs: 1e-6)."""
    from r1exp.plan.memory import trainer_value

    lr = trainer_value(ctx.cfg, "learning_rate")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 5e-5:
        yield Problem("trainer.learning_rate", lr, "a rate for LoRA adapters: full fine-tuning of every weight at "
                      "this rate usually diverges (open-r1's full recipes use 1e-6 to 3e-6)",
                      "set trainer.learning_rate between 1e-6 and 1e-5 for loader=full", severity="warning")


class FullLoader(PeftLoader):
    trains_adapter: ClassVar[bool] = False
    rules: ClassVar[tuple] = (
        Rule("loader.full_4bit", ("loader.load_in_4bit",), no_four_bit,
             doc="full fine-tuning cannot train 4-bit weights"),
        Rule("loader.full_lr", ("trainer.learning_rate",), lr_for_full,
             doc="full fine-tuning at a LoRA learning rate (warning)"),
        Rule("loader.4bit", ("loader.load_in_4bit",), check_four_bit, scope="machine",
             doc="4-bit loading needs CUDA and bitsandbytes"),
    )

    def adapter_config(self, cfg: DictConfig):
        return None

    def describe(self, cfg: DictConfig) -> str:
        return f"{self.name} (every weight trained, no adapter)" + self.reuse_note()
