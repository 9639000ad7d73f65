"""Tools and environments for the tool tests: good ones, and each way a tool can be unusable by TRL."""

from __future__ import annotations

import time


def lookup(word: str, suffix: str = "!") -> str:
    """Look a word up.

    Args:
        word: The word to look up.
        suffix: Appended to the answer.

    Returns:
        The word, shouted.
    """
    return word.upper() + suffix


def no_docstring(word: str) -> str:
    return word


def unannotated(word):
    """Echo a word.

    Args:
        word: The word.
    """
    return word


def undocumented_argument(word: str, count: int) -> str:
    """Repeat a word.

    Args:
        word: The word.
    """
    return word * count


def raises(word: str) -> str:
    """Always fail.

    Args:
        word: Ignored.
    """
    raise RuntimeError("the backend is down")


def hangs(word: str) -> str:
    """Never answer in time.

    Args:
        word: Ignored.
    """
    time.sleep(30)
    return word


class Counter:
    """An environment: count up to a target."""

    def __init__(self, start: int = 0):
        self.value = start

    def reset(self, **row) -> None:
        self.value = 0

    def add(self, amount: int) -> str:
        """Add to the counter.

        Args:
            amount: How much to add.
        """
        self.value += amount
        return str(self.value)


class NoReset:
    def add(self, amount: int) -> str:
        """Add.

        Args:
            amount: How much.
        """
        return str(amount)


class UndocumentedMethod:
    def reset(self, **row) -> None:
        return None

    def add(self, amount):
        return str(amount)
