"""Sums of multi-digit numbers generated offline from a seed: "What is 4821 + 3770?" -> "8591".

The task of the tool-use demo (conf/experiment/tool_use.yaml): numbers of `digits` digits ([min, max] per term),
too long for the tiny model to add in its head, easy for the calculator. `max_total` caps the sum: the demo's sums
all have 4 digits, so that an answer copied from the calculator's response sits at a fixed distance from it (the tiny
model learns a copy at a fixed distance in a few hundred warm-up steps). The worked expression (`reasoning`,
"4821 + 3770") is what a warm-up transcript passes to the calculator.
"""

from __future__ import annotations

import random

from r1exp.data.example import Example


def generate(cfg, n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    low, high = (int(x) for x in cfg.get("digits", [4, 4]))
    if not 1 <= low <= high:
        raise ValueError(f"data.digits must be [min, max] with 1 <= min <= max, got {[low, high]}")
    terms = int(cfg.get("terms", 2))
    if terms < 2:
        raise ValueError(f"data.terms must be at least 2, got {terms}")
    top = cfg.get("max_total")
    if top is not None and int(top) < terms * (10 ** (low - 1) if low > 1 else 0):
        raise ValueError(f"data.max_total={top} is below the smallest sum of {terms} numbers of {low} digits")
    out = []
    while len(out) < n:
        numbers = []
        for _ in range(terms):
            width = rng.randint(low, high)
            numbers.append(rng.randint(10 ** (width - 1) if width > 1 else 0, 10**width - 1))
        if top is not None and sum(numbers) > int(top):
            continue
        expression = " + ".join(str(x) for x in numbers)
        out.append(Example(question=f"What is {expression}?", answer=str(sum(numbers)), reasoning=expression))
    return out
