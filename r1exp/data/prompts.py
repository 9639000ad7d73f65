"""How long the prompts are, in tokens, before any tokenizer is loaded: what the length checks and the memory plan
use for "prompt" in prompt + completion.

In order of trust: data.max_prompt_tokens when the user gives it; measured on a sample of the data when it is
generated or a local file (the longest system prompt + question, at r1exp.models.tokens' characters a token, plus the
chat template); a guess for a hub dataset (GUESS_CHARS characters). A guess is flagged so that a rule resting on
it can be a warning instead of an error.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

from omegaconf import OmegaConf

from r1exp.models.tokens import chars_per_token

SAMPLE = 64                 # examples measured
TEMPLATE_TOKENS = 16        # chat-template tokens around system + user messages
GUESS_CHARS = 1200          # a long math word problem, for data that cannot be looked at here


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
    text = json.dumps(OmegaConf.to_container(data, resolve=True), sort_keys=True, default=str)
    chars, source = _longest_prompt_chars(text)
    tokens = int(math.ceil(chars / chars_per_token(cfg))) + TEMPLATE_TOKENS
    return PromptEstimate(tokens + _tool_tokens(cfg), source)


TOOL_GROUPS = ("tools", "environment", "model", "data")   # what the tools' share of a prompt is made of


def _tool_tokens(cfg) -> int:
    """The tools' descriptions TRL renders into every prompt (r1exp.tools), 0 without tools; once per config (the
    checks and the plan ask for the prompt length several times)."""
    if not OmegaConf.select(cfg, "tools", default=None) and not OmegaConf.select(cfg, "environment._target_",
                                                                                 default=None):
        return 0
    groups = {g: OmegaConf.to_container(cfg[g], resolve=True) if g in cfg else None for g in TOOL_GROUPS}
    return _tool_tokens_of(json.dumps(groups, sort_keys=True, default=str))


@functools.lru_cache(maxsize=32)
def _tool_tokens_of(groups_json: str) -> int:
    from r1exp.tools.rules import tool_prompt_tokens

    try:
        return tool_prompt_tokens(OmegaConf.create(json.loads(groups_json)))
    except Exception:  # noqa: BLE001 - a broken tool is reported by the tools rows; plan without its text
        return 0


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
