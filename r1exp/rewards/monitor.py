"""Reward health during training: per-reward failures and seconds per step in the logged metrics.

A TrainerCallback placed first among the trainer's callbacks: its `on_log` adds `rewards/<label>/failures`
(completions that made the reward raise since the last log) and `rewards/<label>/seconds` (seconds spent in the
reward per optimizer step) to the log line before W&B and metrics.jsonl see it, and appends each failure with its
completion to `reward_failures.jsonl` in the run folder. It also hands checks.max_reward_failure_rate and
checks.reward_time_budget_s to the guarded rewards, which stop the run past them (r1exp.rewards.guard), and writes
the failures not yet logged before such a stop (a run that stops at its first step still leaves the file).
`rewards/seconds` is the seconds of all rewards per step; when they take more than SLOW_SHARE of the step, a warning
says which reward is slow (once).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from r1exp.rewards.guard import GuardedReward

FAILURES_FILE = "reward_failures.jsonl"
SLOW_SHARE = 0.5        # rewards taking more than this share of a step's wall time: warn


def reward_monitor(run_dir: Path, max_failure_rate: float | None, time_budget_s: float | None = None):
    """The callback; call `.attach(trainer, reward_funcs)` once the trainer is built."""
    from transformers import TrainerCallback

    class RewardMonitor(TrainerCallback):
        def __init__(self):
            self.rewards: list[GuardedReward] = []
            self.steps = 0
            self.step = 0
            self.path = Path(run_dir) / FAILURES_FILE
            self.window_start = time.perf_counter()
            self.warned_slow = False

        def attach(self, trainer, reward_funcs) -> None:
            self.rewards = [f for f in reward_funcs if isinstance(f, GuardedReward)]
            for f in self.rewards:
                f.max_failure_rate = max_failure_rate
                f.time_budget_s = time_budget_s
                f.flush = lambda: self._write_failures(self.step + 1)  # the step under way
            handler = trainer.callback_handler
            if self in handler.callbacks:
                handler.callbacks.remove(self)
            handler.callbacks.insert(0, self)   # first: the keys it adds reach every later callback

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1
            self.step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "reward" not in logs:   # the end-of-training summary line has no reward
                return
            steps, self.steps = max(1, self.steps), 0
            wall, self.window_start = time.perf_counter() - self.window_start, time.perf_counter()
            per_reward = {}
            for f in self.rewards:
                failed, seconds = f.stats.take_window()
                logs[f"rewards/{f.__name__}/failures"] = failed
                logs[f"rewards/{f.__name__}/seconds"] = per_reward[f.__name__] = seconds / steps
            logs["rewards/seconds"] = sum(per_reward.values())
            self._warn_if_slow(per_reward, wall / steps)
            self._write_failures(state.global_step)

        def _warn_if_slow(self, per_reward: dict, step_seconds: float) -> None:
            total = sum(per_reward.values())
            if self.warned_slow or not per_reward or step_seconds <= 0 or total <= SLOW_SHARE * step_seconds:
                return
            self.warned_slow = True
            name, seconds = max(per_reward.items(), key=lambda kv: kv[1])
            print(f"r1exp: warning: rewards take {total:.2f} s of each {step_seconds:.2f} s step "
                  f"({total / step_seconds:.0%}); the slowest is {name!r} ({seconds:.2f} s per step). "
                  f"checks.reward_time_budget_s={time_budget_s} stops a reward that is over it on several steps",
                  file=sys.stderr, flush=True)

        def _write_failures(self, step: int) -> None:
            pending = [p for f in self.rewards for p in f.stats.pending]
            for f in self.rewards:
                f.stats.pending.clear()
            if not pending:
                return
            with self.path.open("a") as out:
                for p in pending:
                    out.write(json.dumps({"step": step, "reward": p.reward, "error": p.error,
                                          "completion": p.completion}) + "\n")

    return RewardMonitor()


def budget_rules() -> list:
    """Rows of the rules table (gathered by r1exp.checks.validate)."""
    from r1exp.config.rule import Rule

    return [Rule("checks.reward_time_budget_s", ("checks.reward_time_budget_s",), check_time_budget,
                 doc="the reward time budget is a number of seconds > 0, or null (no budget)")]


def check_time_budget(ctx):
    import math

    from omegaconf import OmegaConf

    from r1exp.errors import Problem

    budget = OmegaConf.select(ctx.cfg, "checks.reward_time_budget_s", default=None)
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        yield Problem("checks.reward_time_budget_s", budget, "expected seconds > 0 (the most one reward may take on "
                      "one step's completions), or null for no budget",
                      "e.g. checks.reward_time_budget_s=30", rule="checks.reward_time_budget_s")
