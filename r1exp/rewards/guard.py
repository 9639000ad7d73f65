"""A reward that raises on one completion must not kill a run, nor silently hide that it is broken.

`GuardedReward` calls the reward on the whole batch as TRL does; if that raises, it scores the batch one completion
at a time and gives None (no opinion, skipped by TRL) to each completion that raises, counting and keeping each
failure with its completion. It also times every call. Once the share of failed completions passes
`max_failure_rate` (set by r1exp.rewards.monitor from checks.max_reward_failure_rate), it stops the run with a
`RewardFailureError` that names the reward, the error and a completion.

Time: each call has a budget (checks.reward_time_budget_s, seconds for one step's batch; null = none). The first
call over it prints a warning; OVER_BUDGET_STRIKES calls over it in a row stop the run with `RewardTooSlowError`
(exit 2, naming the reward, its seconds and the fix); a call still running at HARD_LIMIT_FACTOR x the budget is
interrupted (SIGALRM, main thread) and stops the run the same way, so a reward that hangs cannot hang the run.
Before a stop, the failures not yet written are flushed (`flush`, set by the monitor).
"""

from __future__ import annotations

import numbers
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from r1exp.errors import Problem, RunStopped

SHOWN_PER_REWARD = 3   # failures printed to the log per reward (all of them go to the monitor's file)
MAX_PENDING = 1000     # failures kept between two logs
OVER_BUDGET_STRIKES = 3  # calls in a row over checks.reward_time_budget_s that stop the run
HARD_LIMIT_FACTOR = 3.0  # a call running this many budgets is interrupted


class RewardFailureError(RunStopped):
    """Too many completions made a reward raise: the run stops rather than train on a broken reward (exit 1)."""


class RewardTooSlowError(RunStopped):
    """A reward is over its time budget (checks.reward_time_budget_s) again and again, or hangs: the run stops
    (exit 1: training had started; the configuration itself was valid)."""


def time_limit(seconds: float | None):
    """A context that interrupts the code in it after `seconds` with Interrupted (SIGALRM; only in the main thread,
    where TRL calls rewards; None: no limit)."""
    import contextlib

    if not seconds or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def armed():
        def interrupt(signum, frame):
            raise Interrupted()

        previous = signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return armed()


class Interrupted(BaseException):
    """Raised inside a reward call that ran past its hard limit (not an Exception: the per-completion fallback must
    not swallow it)."""


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
    last_seconds: float = 0.0      # the latest call
    over_budget: int = 0           # calls over the time budget in a row
    pending: list = field(default_factory=list)   # Failure records not yet written by the monitor
    last: Failure | None = None

    def take_window(self) -> tuple[int, float]:
        out = (self.window_failed, self.window_seconds)
        self.window_failed, self.window_seconds = 0, 0.0
        return out


class GuardedReward:
    """A reward function with TRL's calling convention, made failure-tolerant, timed and counted."""

    def __init__(self, fn, label: str, max_failure_rate: float | None = None, time_budget_s: float | None = None):
        self.fn = fn
        self.__name__ = label   # TRL logs rewards/<__name__>/mean
        self.__doc__ = getattr(fn, "__doc__", None)
        self.max_failure_rate = max_failure_rate
        self.time_budget_s = time_budget_s
        self.flush = None       # called before the run is stopped (the monitor writes pending failures)
        self.stats = RewardStats()
        self.observers: list = []   # fn(completions, log_metric) after each call: metrics read off the completions

    def __call__(self, prompts=None, completions=(), **kwargs):
        start = time.perf_counter()
        try:
            with self._hard_limit():
                try:
                    scores = checked_scores(self.fn(prompts=prompts, completions=completions, **kwargs),
                                            len(completions))
                except Exception:  # noqa: BLE001 - find which completions make it raise, score the others
                    scores = [self._one(prompts, completions, kwargs, i) for i in range(len(completions))]
        except Interrupted:
            self._stop_slow(time.perf_counter() - start, len(completions), hung=True)
        finally:
            elapsed = time.perf_counter() - start
            self.stats.window_seconds += elapsed
            self.stats.last_seconds = elapsed
        self.stats.scored += len(completions)
        self._check_time(elapsed, len(completions))
        self._check_rate()
        for observe in self.observers:
            observe(completions, kwargs.get("log_metric"))
        return scores

    def _hard_limit(self):
        """Interrupt the call at HARD_LIMIT_FACTOR x the budget."""
        budget = self.time_budget_s
        return time_limit(HARD_LIMIT_FACTOR * float(budget) if budget else None)

    def _check_time(self, seconds: float, n: int) -> None:
        budget = self.time_budget_s
        if not budget:
            return
        if seconds <= budget:
            self.stats.over_budget = 0
            return
        self.stats.over_budget += 1
        if self.stats.over_budget >= OVER_BUDGET_STRIKES:
            self._stop_slow(seconds, n)
        if self.stats.over_budget == 1:
            print(f"r1exp: warning: reward {self.__name__!r} took {seconds:.1f} s for {n} completions, over "
                  f"checks.reward_time_budget_s={budget:g}; the run stops after {OVER_BUDGET_STRIKES} such steps in "
                  f"a row (or a call of {HARD_LIMIT_FACTOR * budget:g} s)", file=sys.stderr, flush=True)

    def _stop_slow(self, seconds: float, n: int, hung: bool = False) -> None:
        budget = self.time_budget_s
        if hung:
            why = (f"reward {self.__name__!r} was still running after {seconds:.1f} s on {n} completions "
                   f"({HARD_LIMIT_FACTOR:g}x checks.reward_time_budget_s={budget:g}): it was interrupted")
        else:
            why = (f"reward {self.__name__!r} took {seconds:.1f} s on {n} completions, over "
                   f"checks.reward_time_budget_s={budget:g} on {self.stats.over_budget} steps in a row")
        if self.flush is not None:
            self.flush()
        raise RewardTooSlowError(problems=[Problem(
            "checks.reward_time_budget_s", budget, why + "; the run stops rather than spend its time in a reward",
            "make the reward faster (cache, batch, no network or subprocess per completion), or raise "
            "checks.reward_time_budget_s (null: no budget)", rule="reward.time_budget")])

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
            if self.flush is not None:
                self.flush()  # reward_failures.jsonl holds them even when the run stops at its first step
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
