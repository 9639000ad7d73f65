"""Countdown tasks generated offline from a seed: "Using the numbers [7, 3, 5], make 26" -> "(7 * 3) + 5".

Each task is built backwards from a random equation over all its numbers, so every task has a solution; the gold
answer is that equation (the countdown reward accepts any equation that uses each number once and hits the target).
"""

from __future__ import annotations

import random

from r1exp.data.example import Example

COLUMNS = ("answer", "numbers", "target")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a // b if b and a % b == 0 else None}


def generate(cfg, n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    ops = list(cfg.get("operations", ["+", "-", "*"]))
    unknown = [op for op in ops if op not in _OPS]
    if unknown:
        raise ValueError(f"unknown countdown operations {unknown}; known: {sorted(_OPS)}")
    low, high = (int(x) for x in cfg.get("count", [3, 4]))
    top, max_target = int(cfg.get("max_number", 20)), int(cfg.get("max_target", 100))
    out = []
    while len(out) < n:
        numbers = [rng.randint(1, top) for _ in range(rng.randint(low, high))]
        task = _equation(rng, numbers, ops)
        if task is None or not 1 <= task[1] <= max_target:
            continue
        equation, target, steps = task
        question = (f"Using the numbers {numbers}, create an equation that equals {target}. "
                    f"Use each number exactly once, with {' '.join(ops)} and parentheses.")
        out.append(Example(question=question, answer=equation, reasoning=", ".join(steps),
                           extra=(("numbers", numbers), ("target", target))))
    return out


def _equation(rng: random.Random, numbers: list[int], ops: list[str]):
    """A random left-to-right equation over all numbers: (text, value, worked steps), or None if it divides badly."""
    order = numbers[:]
    rng.shuffle(order)
    text, value, steps = str(order[0]), order[0], []
    for i, x in enumerate(order[1:]):
        op = rng.choice(ops)
        result = _OPS[op](value, x)
        if result is None:
            return None
        steps.append(f"{value} {op} {x} = {result}")
        text = f"{text} {op} {x}" if i == 0 else f"({text}) {op} {x}"
        value = result
    return text, value, steps
