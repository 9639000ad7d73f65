"""Rewards for getting the answer right: accuracy (math-verify), exact match, numeric match.

Each reads the gold answer from the dataset's `answer` column and the completion's answer from its last answer
block (`tags`, the run's data.tags: <answer>...</answer> by default; else its last number). A gold answer the
checker cannot read gives None (no opinion, skipped by TRL) rather than a silent 0 that would teach the model
nothing and hide the problem.
"""

from __future__ import annotations

from r1exp.rewards.mathcheck import is_correct
from r1exp.rewards.text import completion_text, extract_answer, normalize, to_number


def accuracy(completions, answer, *, tags=None, **_) -> list[float | None]:
    """1.0 when the answer equals the gold answer mathematically (math-verify: 1/2 = 0.5 = \\frac{1}{2}), else 0.0;
    None when the gold answer does not parse."""
    scores = []
    for completion, gold in zip(completions, answer):
        correct = is_correct(extract_answer(completion_text(completion), tags), gold)
        scores.append(None if correct is None else float(correct))
    return scores


def exact_match(completions, answer, *, tags=None, **_) -> list[float | None]:
    """1.0 when the answer is the gold text (ignoring case, surrounding space and $ signs), else 0.0; None for an
    empty gold answer."""
    scores = []
    for completion, gold in zip(completions, answer):
        want = normalize(gold) if gold is not None else ""
        if not want:
            scores.append(None)
            continue
        guess = extract_answer(completion_text(completion), tags)
        scores.append(1.0 if guess is not None and normalize(guess) == want else 0.0)
    return scores


def numeric_match(completions, answer, *, tolerance: float = 1e-6, tags=None, **_) -> list[float | None]:
    """1.0 when the answer is the gold number within a relative `tolerance` ("1,000" and "$1000" are 1000), else
    0.0; None when the gold answer is not a number."""
    scores = []
    for completion, gold in zip(completions, answer):
        want = to_number(gold)
        if want is None:
            scores.append(None)
            continue
        got = to_number(extract_answer(completion_text(completion), tags))
        scores.append(1.0 if got is not None and abs(got - want) <= tolerance * max(1.0, abs(want)) else 0.0)
    return scores
