"""The countdown reward: the answer is an equation that uses each given number exactly once and equals the target.

The equation is evaluated by walking its syntax tree (numbers, + - * /, parentheses), never with eval().
"""

from __future__ import annotations

import ast
import json
import operator
import re

from r1exp.data.tags import Tags
from r1exp.rewards.text import completion_text

ALLOWED = re.compile(r"^[\d+\-*/().\s]+$")
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def countdown(completions, numbers, target, *, tags=None, **_) -> list[float | None]:
    """1.0 when the last answer block (`tags`: <answer>...</answer> by default) holds an equation over exactly the
    given numbers that equals the target (an `= target` at its end is allowed), else 0.0; None when the row has no
    numbers or target."""
    pattern = Tags.of(tags).answer_pattern
    scores = []
    for completion, given, goal in zip(completions, numbers, target):
        given, goal = _numbers(given), _number(goal)
        if given is None or goal is None:
            scores.append(None)
            continue
        tagged = pattern.findall(completion_text(completion))
        value = evaluate(tagged[-1], given) if tagged else None
        scores.append(1.0 if value is not None and abs(value - goal) < 1e-6 else 0.0)
    return scores


def evaluate(equation: str, numbers: list[int]) -> float | None:
    """The value of an equation that uses exactly `numbers` (each once), else None."""
    expression = equation.split("=")[0].strip()
    if not expression or not ALLOWED.match(expression):
        return None
    used = sorted(int(n) for n in re.findall(r"\d+", expression))
    if used != sorted(numbers):
        return None
    try:
        return _value(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, ValueError):
        return None


def _value(node) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"not allowed in a countdown equation: {ast.dump(node)}")


def _numbers(value) -> list[int] | None:
    """The given numbers, from a list or from text such as "[3, 4, 5]" (a CSV column)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = re.findall(r"-?\d+", value)
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        return None


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
