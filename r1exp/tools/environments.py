"""Environments shipped with r1exp: classes whose public methods TRL exposes to the model as tools, one instance per
rollout (TRL's `environment_factory`). TRL calls `reset(**row)` with the dataset row before each rollout; a string
it returns is appended to the user's message; `get_reward()`, when defined, is one more reward (weight 1).
"""

from __future__ import annotations

from r1exp.rewards.text import to_number


class AnswerChecker:
    """Multi-turn arithmetic: the model may check a candidate answer a few times before it commits to one.

    Each check says whether the candidate is right, too small or too large; after `max_checks` the environment
    answers no more. `get_reward` is 1 when the last checked candidate was right and fewer checks were spent,
    rewarding a model that narrows down on the answer rather than one that guesses blindly.
    """

    def __init__(self, max_checks: int = 3, reward_by_checks: bool = False):
        self.max_checks = int(max_checks)
        self.reward_by_checks = bool(reward_by_checks)
        self.gold: float | None = None
        self.checks: list[bool] = []

    def reset(self, answer: str | None = None, **row) -> str | None:
        self.gold = to_number(answer)
        self.checks = []
        return f"You may check an answer with check_answer up to {self.max_checks} times."

    def check_answer(self, candidate: str) -> str:
        """Check a candidate answer to the question.

        Args:
            candidate: The number you think answers the question, e.g. "42".

        Returns:
            "right", "too small" or "too large", or why the candidate could not be checked.
        """
        if len(self.checks) >= self.max_checks:
            raise RuntimeError(f"no checks left (at most {self.max_checks})")
        value = to_number(candidate)
        if value is None or self.gold is None:
            raise ValueError(f"{candidate!r} is not a number")
        self.checks.append(value == self.gold)
        return "right" if value == self.gold else ("too small" if value < self.gold else "too large")

    def get_reward(self) -> float:
        if not self.reward_by_checks:
            return 0.0
        if not self.checks or not self.checks[-1]:
            return 0.0
        return 1.0 - (len(self.checks) - 1) / max(1, self.max_checks)
