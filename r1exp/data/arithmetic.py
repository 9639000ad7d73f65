"""Arithmetic questions generated offline from a seed: "What is 3 + 4?" -> "7"."""

from __future__ import annotations

import random

from r1exp.data.example import Example

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def generate(cfg, n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    ops = list(cfg.get("operations", ["+"]))
    unknown = [op for op in ops if op not in _OPS]
    if unknown:
        raise ValueError(f"unknown arithmetic operations {unknown}; known: {sorted(_OPS)}")
    top = int(cfg.get("max_operand", 9))
    out = []
    for _ in range(n):
        a, b, op = rng.randint(0, top), rng.randint(0, top), rng.choice(ops)
        out.append(Example(question=f"What is {a} {op} {b}?", answer=str(_OPS[op](a, b)), reasoning=f"{a} {op} {b}"))
    return out
