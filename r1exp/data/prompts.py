"""How long the prompts are, in tokens, before any tokenizer is loaded: what the length checks and the memory plan
use for "prompt" in prompt + completion.

In order of trust: data.max_prompt_tokens when the user gives it; measured on a sample of the data when it is
generated or a local file (the longest system prompt + question, at CHARS_PER_TOKEN characters a token, plus the
chat template); a guess for a hub dataset (GUESS_CHARS characters). A guess is flagged so that a rule resting on
it can be a warning instead of an error.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

from omegaconf import OmegaConf

SAMPLE = 64                 # examples measured
TEMPLATE_TOKENS = 16        # chat-template tokens around system + user messages
GUESS_CHARS = 1200          # a long math word problem, for data that cannot be looked at here
CHARS_PER_TOKEN = {"large": 3.5, "small": 2.0}  # vocab >= 32k (real BPE) | a small local BPE (the tiny model)


@dataclass(frozen=True)
class PromptEstimate:
    tokens: int
    source: str             # given | measured | guess

    @property
    def is_guess(self) -> bool:
        return self.source == "guess"


def prompt_estimate(cfg) -> PromptEstimate:
    data = cfg.data
    if data.get("max_prompt_tokens"):
        return PromptEstimate(int(data.max_prompt_tokens), "given")
    vocab = OmegaConf.select(cfg, "model.arch.vocab", default=None) or 151936
    per_token = CHARS_PER_TOKEN["large" if int(vocab) >= 32000 else "small"]
    text = json.dumps(OmegaConf.to_container(data, resolve=True), sort_keys=True, default=str)
    chars, source = _longest_prompt_chars(text)
    return PromptEstimate(int(math.ceil(chars / per_token)) + TEMPLATE_TOKENS, source)


@functools.lru_cache(maxsize=32)
def _longest_prompt_chars(data_json: str) -> tuple[int, str]:
    """(characters of the longest system prompt + question among a sample, how it was found)."""
    from r1exp import data as datasets  # light: no `datasets`, no torch

    data_cfg = OmegaConf.create(json.loads(data_json))
    system = len(str(data_cfg.get("system_prompt") or ""))
    if not datasets.is_local(data_cfg):
        return system + GUESS_CHARS, "guess"
    try:
        sample = datasets.examples(data_cfg, n=SAMPLE)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the data rules; plan with a guess
        return system + GUESS_CHARS, "guess"
    if not sample:
        return system + GUESS_CHARS, "guess"
    longest = max(_chars(ex) for ex in sample)
    return system + longest, "measured"


def _chars(example) -> int:
    if example.messages:
        return sum(len(str(m.get("content", ""))) for m in example.messages)
    return len(example.question)
