"""Is a guessed answer mathematically equal to the gold one? math-verify (open-r1's checker), cached.

math-verify parses LaTeX and plain expressions with sympy, about a millisecond a pair. Rewards call it for every
completion of every step, and the same short answers come back again and again, so parses are cached by text and
two plain integers are compared as integers (math-verify's verdict for them, without sympy). math-verify is
imported on first use: importing this module stays light.
"""

from __future__ import annotations

import functools
import logging
import re

INTEGER = re.compile(r"^-?\d+$")


class _NoTimeoutWarning(logging.Filter):
    """Rewards run math-verify without its signal-based timeouts (they fail outside the main thread); it warns
    about that once per process in the middle of the training log. The choice is deliberate: drop that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutWarning())


@functools.lru_cache(maxsize=8192)
def parsed(text: str):
    """math-verify's parse of a text (a tuple; empty when nothing mathematical was found)."""
    from math_verify import parse

    return tuple(parse(text, parsing_timeout=None))


def gold_parses(gold) -> bool:
    """Whether a gold answer means anything to math-verify (rewards give None, no opinion, when it does not)."""
    text = str(gold).strip()
    return bool(INTEGER.match(text)) or bool(parsed(text))


@functools.lru_cache(maxsize=65536)
def _equal(gold: str, guess: str) -> bool:
    if INTEGER.match(gold) and INTEGER.match(guess):
        return int(gold) == int(guess)
    gold_parsed, guess_parsed = parsed(gold), parsed(guess)
    if not gold_parsed or not guess_parsed:
        return False
    from math_verify import verify

    return bool(verify(list(gold_parsed), list(guess_parsed), timeout_seconds=None))


def is_correct(guess: str | None, gold) -> bool | None:
    """True/False when the gold answer parses (a missing guess is False), None when it does not."""
    gold_text = str(gold).strip()
    if not gold_parses(gold_text):
        return None
    if guess is None:
        return False
    return _equal(gold_text, str(guess).strip())


def warm_up() -> None:
    """Import math-verify (and sympy) now, so its ~1 s is not charged to the first training step that meets an
    answer that is not a plain integer."""
    parsed("1/2")
