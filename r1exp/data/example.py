"""One task example, whatever its source: the question, the gold answer, and a short worked solution."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    reasoning: str = ""  # a worked solution when the task can produce one (used to warm up the tiny model)
    extra: tuple = ()    # extra dataset columns as (name, value) pairs, e.g. countdown's numbers and target
    messages: tuple = () # the prompt as chat messages when the source already has them (else built from question)
