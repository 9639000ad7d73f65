"""Getting text and answers out of completions, whatever their shape (plain strings or chat messages)."""

from __future__ import annotations

import re

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def completion_text(completion) -> str:
    """TRL passes plain strings, or for chat prompts a list of messages: take the assistant's content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[0], dict):
        return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")
    return str(completion)


def extract_answer(text: str) -> str | None:
    """The content of the last <answer> tag, else the last number, else None."""
    tagged = ANSWER_TAG.findall(text)
    if tagged:
        return tagged[-1].strip()
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None
