"""A reward that raises on one completion must not kill a run, nor silently hide that it is broken.

`GuardedReward` calls the reward on the whole batch as TRL does; if that raises, it scores the batch one completion
at a time and gives None (no opinion, skipped by TRL) to each completion that raises, counting and keeping each
failure with its completion. It also times every call. Once the share of failed completions passes
`max_failure_rate` (set by r1exp.rewards.monitor from checks.max_reward_failure_rate), it stops the run with a
`RewardFailureError` that names the reward, the error and a completion.
"""

from __future__ import annotations

import numbers
import sys
import time
from dataclasses import dataclass, field

SHOWN_PER_REWARD = 3   # failures printed to the log per reward (all of them go to the monitor's file)
MAX_PENDING = 1000     # failures kept between two logs


class RewardFailureError(RuntimeError):
    """Too many completions made a reward raise: the run stops rather than train on a broken reward."""


@dataclass
class Failure:
    reward: str
    error: str
    completion: str


@dataclass
class RewardStats:
    """Counters the monitor reads at each log and resets (`window_*`), and run totals (the failure rate)."""

    scored: int = 0
    failed: int = 0
    window_failed: int = 0
    window_seconds: float = 0.0
    pending: list = field(default_factory=list)   # Failure records not yet written by the monitor
    last: Failure | None = None

    def take_window(self) -> tuple[int, float]:
        out = (self.window_failed, self.window_seconds)
        self.window_failed, self.window_seconds = 0, 0.0
        return out


class GuardedReward:
    """A reward function with TRL's calling convention, made failure-tolerant, timed and counted."""

    def __init__(self, fn, label: str, max_failure_rate: float | None = None):
        self.fn = fn
        self.__name__ = label   # TRL logs rewards/<__name__>/mean
        self.__doc__ = getattr(fn, "__doc__", None)
        self.max_failure_rate = max_failure_rate
        self.stats = RewardStats()

    def __call__(self, prompts=None, completions=(), **kwargs):
        start = time.perf_counter()
        try:
            try:
                scores = checked_scores(self.fn(prompts=prompts, completions=completions, **kwargs), len(completions))
            except Exception:  # noqa: BLE001 - find which completions make it raise, score the others
                scores = [self._one(prompts, completions, kwargs, i) for i in range(len(completions))]
        finally:
            self.stats.window_seconds += time.perf_counter() - start
        self.stats.scored += len(completions)
        self._check_rate()
        return scores

    def _one(self, prompts, completions, kwargs, i: int):
        try:
            n = len(completions)
            one = {k: _row(v, i, n) for k, v in kwargs.items()}
            scores = self.fn(prompts=_row(prompts, i, n), completions=completions[i : i + 1], **one)
            return checked_scores(scores, 1)[0]
        except Exception as e:  # noqa: BLE001 - a reward's bug on one completion is data, counted and logged
            self._record(e, completions[i])
            return None

    def _record(self, error: Exception, completion) -> None:
        from r1exp.rewards.text import completion_text

        self.stats.failed += 1
        self.stats.window_failed += 1
        failure = Failure(self.__name__, f"{type(error).__name__}: {error}", completion_text(completion))
        self.stats.last = failure
        if len(self.stats.pending) < MAX_PENDING:
            self.stats.pending.append(failure)
        if self.stats.failed <= SHOWN_PER_REWARD:
            print(f"r1exp: reward {self.__name__!r} raised {failure.error} on the completion "
                  f"{failure.completion[:200]!r}; its score is None", file=sys.stderr)

    def _check_rate(self) -> None:
        limit = self.max_failure_rate
        if limit is None or not self.stats.scored:
            return
        rate = self.stats.failed / self.stats.scored
        if rate > limit:
            last = self.stats.last
            example = f"\n  last error: {last.error}\n  on the completion: {last.completion[:300]!r}" if last else ""
            raise RewardFailureError(
                f"reward {self.__name__!r} raised on {self.stats.failed} of {self.stats.scored} completions "
                f"({rate:.0%}), more than checks.max_reward_failure_rate={limit}; the run stops rather than train "
                f"on a broken reward.{example}\n  fix: correct the reward (the columns it reads, the answers it "
                f"parses), or raise checks.max_reward_failure_rate")


def checked_scores(scores, n: int) -> list:
    """The scores, or TypeError/ValueError for an output TRL would choke on (wrong length, not numbers)."""
    if isinstance(scores, (str, bytes)) or not hasattr(scores, "__iter__"):
        raise TypeError(f"returned {scores!r} ({type(scores).__name__}); expected a list of floats or None")
    scores = list(scores)
    if len(scores) != n:
        raise ValueError(f"returned {len(scores)} scores for {n} completions")
    for s in scores:
        if s is not None and (isinstance(s, bool) or not isinstance(s, numbers.Real)):
            raise TypeError(f"returned {s!r} ({type(s).__name__}); expected a float or None")
    return [None if s is None else float(s) for s in scores]


def _row(value, i: int, n: int):
    """Row i of a per-completion column; anything else (trainer_state, log_metric, ...) unchanged."""
    if isinstance(value, (list, tuple)) and len(value) == n:
        return value[i : i + 1]
    return value
