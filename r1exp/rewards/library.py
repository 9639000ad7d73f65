"""The reward library as data: each reward's function, the dataset columns it reads, and the sanity probe that
shows it works (r1exp.rewards.sanity: which good and bad completions it must tell apart).

`conf/reward/<name>.yaml` selects one by `name`; validation (r1exp.rewards.rules) reads `needs` to check
that the data has those columns, and the keyword-only parameters of `fn` to check the config's parameters.
Importing this module is light (math-verify is imported on the first call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from r1exp.rewards import correctness, countdown, length, shape


@dataclass(frozen=True)
class RewardSpec:
    fn: Callable
    needs: tuple = ()        # dataset columns the reward reads (besides prompts and completions)
    probe: str = "answer"    # r1exp.rewards.sanity.PROBES key
    math_verify: bool = False  # checks answers with math-verify (imported when the reward is built, not mid-step)
    reasoning: bool = False  # asks for written reasoning (<think>...</think>): needs room in max_completion_length
    tags: tuple = ()         # the tag pairs it looks for (r1exp.data.tags): the system prompt should name them


ANSWER, BOTH = ("answer",), ("think", "answer")
SPECS: dict[str, RewardSpec] = {
    "accuracy": RewardSpec(correctness.accuracy, needs=("answer",), probe="answer", math_verify=True, tags=ANSWER),
    "exact": RewardSpec(correctness.exact_match, needs=("answer",), probe="answer", tags=ANSWER),
    "numeric": RewardSpec(correctness.numeric_match, needs=("answer",), probe="answer", tags=ANSWER),
    "countdown": RewardSpec(countdown.countdown, needs=("numbers", "target"), probe="answer", tags=ANSWER),
    "format": RewardSpec(shape.format, probe="format", reasoning=True, tags=BOTH),
    "tag_count": RewardSpec(shape.tag_count, probe="format", reasoning=True, tags=BOTH),
    "reasoning_steps": RewardSpec(shape.reasoning_steps, probe="steps", reasoning=True, tags=("think",)),
    "repetition": RewardSpec(shape.repetition, probe="repetition"),
    "length": RewardSpec(length.length, needs=("answer",), probe="brevity", math_verify=True, tags=ANSWER),
    "cosine": RewardSpec(length.cosine, needs=("answer",), probe="answer", math_verify=True, tags=ANSWER),
    "overlong": RewardSpec(length.overlong, probe="overlong"),
}

LIBRARY: dict[str, Callable] = {name: spec.fn for name, spec in SPECS.items()}
