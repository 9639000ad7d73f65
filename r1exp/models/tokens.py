"""Characters per token, for lengths estimated before any tokenizer is loaded (prompts, tool descriptions)."""

from __future__ import annotations

from omegaconf import OmegaConf

CHARS_PER_TOKEN = {"large": 3.5, "small": 2.0}  # vocab >= 32k (real BPE) | a small local BPE (the tiny model)


def chars_per_token(cfg) -> float:
    vocab = OmegaConf.select(cfg, "model.arch.vocab", default=None) or 151936
    return CHARS_PER_TOKEN["large" if int(vocab) >= 32000 else "small"]
