"""The reward library: plain functions, each with TRL's calling convention."""

from __future__ import annotations

import re

from r1exp.rewards.text import completion_text, extract_answer

FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.S)


def accuracy(prompts=None, completions=(), answer=(), **_) -> list[float | None]:
    """1.0 when the extracted answer equals the gold answer mathematically (math-verify), else 0.0.
    None when the gold answer cannot be parsed (no opinion rather than a silent 0)."""
    from math_verify import parse, verify

    scores = []
    for completion, gold in zip(completions, answer):
        gold_parsed = parse(str(gold), parsing_timeout=None)
        if not gold_parsed:
            scores.append(None)
            continue
        guess = extract_answer(completion_text(completion))
        if guess is None:
            scores.append(0.0)
            continue
        scores.append(1.0 if verify(gold_parsed, parse(guess, parsing_timeout=None), timeout_seconds=None) else 0.0)
    return scores


def format(prompts=None, completions=(), **_) -> list[float]:  # noqa: A001 - the reward is called "format"
    """1.0 when the completion is exactly <think>...</think><answer>...</answer>, else 0.0."""
    return [1.0 if FORMAT.match(completion_text(c)) else 0.0 for c in completions]


LIBRARY = {"accuracy": accuracy, "format": format}
