"""Numbers in range, as a table: (key, test, what the test means). Absent keys keep TRL's default and are skipped;
a wrong type is the type rules' business, so only numbers are tested here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from r1exp.config.checks.common import ABSENT, get, is_number
from r1exp.errors import Problem


@dataclass(frozen=True)
class Range:
    key: str
    ok: Callable[[float], bool]
    expected: str           # "> 0", "in [0, 1)" ...
    why: str = ""


def positive(v) -> bool:
    return v > 0


def at_least_one(v) -> bool:
    return v >= 1


def non_negative(v) -> bool:
    return v >= 0


RANGES: list[Range] = [
    Range("trainer.learning_rate", positive, "> 0", "a zero or negative learning rate never moves the adapter"),
    Range("trainer.max_steps", lambda v: v > 0 or v == -1, "> 0 (or -1: train for num_train_epochs)"),
    Range("trainer.num_train_epochs", positive, "> 0"),
    Range("trainer.per_device_train_batch_size", at_least_one, ">= 1"),
    Range("trainer.gradient_accumulation_steps", at_least_one, ">= 1"),
    Range("trainer.steps_per_generation", at_least_one, ">= 1"),
    Range("trainer.generation_batch_size", at_least_one, ">= 1"),
    Range("trainer.max_completion_length", at_least_one, ">= 1"),
    Range("trainer.temperature", positive, "> 0", "sampling divides the logits by the temperature"),
    Range("trainer.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    Range("trainer.min_p", lambda v: 0 <= v <= 1, "in [0, 1]"),
    Range("trainer.repetition_penalty", positive, "> 0"),
    Range("trainer.beta", non_negative, ">= 0", "the KL penalty's weight; 0 turns the reference model off"),
    Range("trainer.epsilon", non_negative, ">= 0"),
    Range("trainer.epsilon_high", non_negative, ">= 0"),
    Range("trainer.num_iterations", at_least_one, ">= 1"),
    Range("trainer.logging_steps", positive, "> 0"),
    Range("trainer.weight_decay", non_negative, ">= 0"),
    Range("trainer.max_grad_norm", non_negative, ">= 0"),
    Range("trainer.warmup_steps", non_negative, ">= 0"),
    Range("model.max_seq_length", at_least_one, ">= 1"),
    Range("model.lora.r", at_least_one, ">= 1", "the LoRA rank"),
    Range("model.lora.alpha", positive, "> 0"),
    Range("model.lora.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    Range("model.arch.params", positive, "> 0"),
    Range("model.arch.layers", at_least_one, ">= 1"),
    Range("model.arch.hidden", at_least_one, ">= 1"),
    Range("model.arch.heads", at_least_one, ">= 1"),
    Range("model.arch.kv_heads", at_least_one, ">= 1"),
    Range("model.arch.intermediate", at_least_one, ">= 1"),
    Range("model.arch.vocab", at_least_one, ">= 1"),
    Range("engine.tensor_parallel_size", at_least_one, ">= 1"),
    Range("engine.max_model_len", at_least_one, ">= 1"),
    Range("engine.port", lambda v: 1 <= v <= 65535, "in 1..65535"),
    Range("engine.timeout_s", positive, "> 0"),
    Range("data.num_samples", at_least_one, ">= 1"),
    Range("data.max_prompt_tokens", at_least_one, ">= 1"),
    Range("hardware.num_gpus", non_negative, ">= 0"),
    Range("hardware.gpu_memory_gb", positive, "> 0"),
    Range("checks.reward_sanity_samples", at_least_one, ">= 1"),
]


def numbers_in_range(ctx):
    for row in RANGES:
        value = get(ctx.cfg, row.key, ABSENT)
        if value is ABSENT or not is_number(value):
            continue
        if not row.ok(value):
            why = f"must be {row.expected}" + (f" ({row.why})" if row.why else "")
            yield Problem(row.key, value, why, f"set {row.key} {row.expected}")
