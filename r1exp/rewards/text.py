"""Getting text, answers and lengths out of completions, whatever their shape (plain strings or chat messages).

Every library reward reads completions through these helpers, so a change of TRL's completion shape is fixed in
one place. The tags are the run's (`tags`: r1exp.data.tags; None = <think>/<answer>).
"""

from __future__ import annotations

import re

from r1exp.data.tags import Tags

NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)$")
WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")


def completion_text(completion) -> str:
    """TRL passes plain strings, or for chat prompts a list of messages: take the assistant's content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[0], dict):
        return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")
    return "" if completion is None else str(completion)


def extract_answer(text: str, tags=None) -> str | None:
    """The content of the last answer block (<answer>...</answer> by default), else the last number, else None."""
    tagged = Tags.of(tags).answer_pattern.findall(text)
    if tagged:
        return tagged[-1].strip()
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None


def think_text(text: str, tags=None) -> str:
    """The content of the first reasoning block (<think>...</think> by default), else the whole text before any
    answer block."""
    tags = Tags.of(tags)
    found = tags.think_pattern.search(text)
    if found:
        return found.group(1)
    return text.split(tags.answer[0], 1)[0]


def normalize(answer: str) -> str:
    """For exact match: case, surrounding space, inner runs of space, a trailing period and $...$ do not count."""
    text = " ".join(str(answer).strip().split()).casefold()
    text = text.strip("$").strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def to_number(answer: str | None) -> float | None:
    """A plain number written the way people write them ("1,000", "$5", "7.", "-3.5", "50%"), else None."""
    if answer is None:
        return None
    text = str(answer).strip().replace(",", "").replace("$", "").replace("\\%", "").rstrip("%").rstrip(".").strip()
    if not PLAIN_NUMBER.match(text):
        return None
    return float(text)


def completion_length(completion, completion_ids=None) -> int:
    """Length in tokens: the ids TRL passes when there are any, else an estimate (one per word or symbol)."""
    if completion_ids is not None:
        return len(completion_ids)
    return len(WORD_OR_SYMBOL.findall(completion_text(completion)))


def approximate_ids(text: str) -> list[int]:
    """Stand-in token ids for a text scored without a tokenizer (the reward sanity check): one per word or symbol."""
    return list(range(len(WORD_OR_SYMBOL.findall(text))))
