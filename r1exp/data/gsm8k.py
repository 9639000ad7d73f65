"""GSM8K's answer column: a worked solution with calculator notes, then "#### 72". The gold answer is the number."""

from __future__ import annotations

import re

CALCULATOR_NOTE = re.compile(r"<<[^>]*>>")


def split_answer(text: str) -> tuple[str, str]:
    """(reasoning, answer): the text before '####' without <<...>> notes, and the answer after it without commas."""
    reasoning, sep, answer = str(text).rpartition("####")
    if not sep:
        return "", str(text).strip()
    return CALCULATOR_NOTE.sub("", reasoning).strip(), answer.strip().replace(",", "")
