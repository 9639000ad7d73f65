"""Rewards for the shape of a completion, whatever its answer: format, tag count, reasoning steps, repetition."""

from __future__ import annotations

import re

from r1exp.data.tags import Tags
from r1exp.rewards.text import completion_text, think_text

STEP = re.compile(
    r"(?:^|\n)\s*(?:step\s*\d+\s*[:.)]|\d+[.)]\s|[-*\u2022]\s)"    # "Step 1:", "1.", "- " at a line start
    r"|\b(?:first|second|third|next|then|finally)\b\s*,",          # "First, ... Then, ... Finally, ..."
    re.I,
)


def format(completions, *, tags=None, **_) -> list[float]:  # noqa: A001 - the reward is called "format"
    """1.0 when the completion is exactly the reasoning block then the answer block (by default
    <think>...</think><answer>...</answer>; space around allowed), else 0.0."""
    pattern = Tags.of(tags).format_pattern
    return [1.0 if pattern.match(completion_text(c)) else 0.0 for c in completions]


def tag_count(completions, *, tags=None, **_) -> list[float]:
    """0.25 for each of the four tags (by default <think>, </think>, <answer>, </answer>) that appears exactly once:
    partial credit on the way to the format."""
    four = Tags.of(tags).all
    scores = []
    for completion in completions:
        text = completion_text(completion)
        scores.append(sum(0.25 for tag in four if text.count(tag) == 1))
    return scores


def reasoning_steps(completions, *, min_steps: int = 3, tags=None, **_) -> list[float]:
    """min(1, steps / min_steps), counting step markers ("Step 1:", "1.", "- ", "First,", "Then,") in the
    reasoning."""
    tags = Tags.of(tags)
    return [min(1.0, len(STEP.findall(think_text(completion_text(c), tags))) / min_steps) for c in completions]


def repetition(completions, *, ngram: int = 3, max_penalty: float = -1.0, **_) -> list[float]:
    """max_penalty x the share of repeated word n-grams (0 for a text with no repeats, max_penalty for one n-gram
    over and over)."""
    if max_penalty > 0:
        raise ValueError(f"repetition: max_penalty must be <= 0 (a penalty), got {max_penalty}")
    scores = []
    for completion in completions:
        words = completion_text(completion).lower().split()
        grams = [tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1)]
        if not grams:
            scores.append(0.0)
            continue
        scores.append(max_penalty * (1.0 - len(set(grams)) / len(grams)) + 0.0)
    return scores
