"""Rewards on completion length: Kimi 1.5's group length reward, cosine-scaled correctness, DAPO's soft overlong
punishment. Lengths are in tokens (TRL's completion_ids), estimated from the text when no ids are given."""

from __future__ import annotations

import math

from r1exp.rewards.mathcheck import is_correct
from r1exp.rewards.text import completion_length, completion_text, extract_answer


def _ids(completion_ids, n: int) -> list:
    return list(completion_ids) if completion_ids is not None else [None] * n


def _correct(completions, answer, tags) -> list[bool | None]:
    return [is_correct(extract_answer(completion_text(c), tags), gold) for c, gold in zip(completions, answer)]


def length(completions, answer, prompts=None, completion_ids=None, *, tags=None, **_) -> list[float | None]:
    """Kimi 1.5: within the completions of one prompt, lam = 0.5 - (len - min) / (max - min); a right answer gets
    lam (shorter is better), a wrong one min(0, lam) (never rewarded for being short). 0 when all lengths are equal;
    None when the gold answer does not parse."""
    n = len(completions)
    lengths = [completion_length(c, ids) for c, ids in zip(completions, _ids(completion_ids, n))]
    correct = _correct(completions, answer, tags)
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts if prompts is not None else [None] * n):
        groups.setdefault(repr(prompt), []).append(i)
    scores: list[float | None] = [None] * n
    for members in groups.values():
        low, high = min(lengths[i] for i in members), max(lengths[i] for i in members)
        for i in members:
            if correct[i] is None:
                continue
            lam = 0.5 - (lengths[i] - low) / (high - low) if high > low else 0.0
            scores[i] = lam if correct[i] else min(0.0, lam)
    return scores


def cosine(completions, answer, completion_ids=None, *, max_length: int = 1000, min_correct: float = 0.5,
           max_correct: float = 1.0, min_wrong: float = -1.0, max_wrong: float = -0.5, tags=None,
           **_) -> list[float | None]:
    """Correctness scaled by a cosine of the length (Yeo et al. 2025): a right answer earns max_correct when short,
    falling to min_correct at max_length; a wrong one costs min_wrong when short, easing to max_wrong at
    max_length (thinking longer is less bad when wrong). None when the gold answer does not parse."""
    n = len(completions)
    scores: list[float | None] = []
    for c, ids, correct in zip(completions, _ids(completion_ids, n), _correct(completions, answer, tags)):
        if correct is None:
            scores.append(None)
            continue
        progress = min(1.0, completion_length(c, ids) / max_length)
        weight = 0.5 * (1.0 + math.cos(math.pi * progress))   # 1 at length 0, 0 at max_length
        if correct:
            scores.append(min_correct + (max_correct - min_correct) * weight)
        else:
            scores.append(max_wrong + (min_wrong - max_wrong) * weight)
    return scores


def overlong(completions, completion_ids=None, *, max_length: int = 1024, cache_length: int | None = None,
             **_) -> list[float]:
    """DAPO's soft overlong punishment: 0 up to max_length - cache_length tokens, then falling linearly to -1 at
    max_length, -1 beyond. cache_length defaults to a fifth of max_length."""
    cache = int(cache_length) if cache_length else max(1, round(0.2 * max_length))
    start = max_length - cache
    scores = []
    for c, ids in zip(completions, _ids(completion_ids, len(completions))):
        size = completion_length(c, ids)
        if size <= start:
            scores.append(0.0)
        elif size <= max_length:
            scores.append((start - size) / cache)
        else:
            scores.append(-1.0)
    return scores
