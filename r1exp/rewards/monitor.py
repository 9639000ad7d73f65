"""Reward health during training: per-reward failures and seconds per step in the logged metrics.

A TrainerCallback placed first among the trainer's callbacks: its `on_log` adds `rewards/<label>/failures`
(completions that made the reward raise since the last log) and `rewards/<label>/seconds` (seconds spent in the
reward per optimizer step) to the log line before W&B and metrics.jsonl see it, and appends each failure with its
completion to `reward_failures.jsonl` in the run folder. It also hands checks.max_reward_failure_rate to the
guarded rewards, which stop the run past it (r1exp.rewards.guard).
"""

from __future__ import annotations

import json
from pathlib import Path

from r1exp.rewards.guard import GuardedReward

FAILURES_FILE = "reward_failures.jsonl"


def reward_monitor(run_dir: Path, max_failure_rate: float | None):
    """The callback; call `.attach(trainer, reward_funcs)` once the trainer is built."""
    from transformers import TrainerCallback

    class RewardMonitor(TrainerCallback):
        def __init__(self):
            self.rewards: list[GuardedReward] = []
            self.steps = 0
            self.path = Path(run_dir) / FAILURES_FILE

        def attach(self, trainer, reward_funcs) -> None:
            self.rewards = [f for f in reward_funcs if isinstance(f, GuardedReward)]
            for f in self.rewards:
                f.max_failure_rate = max_failure_rate
            handler = trainer.callback_handler
            if self in handler.callbacks:
                handler.callbacks.remove(self)
            handler.callbacks.insert(0, self)   # first: the keys it adds reach every later callback

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "reward" not in logs:   # the end-of-training summary line has no reward
                return
            steps, self.steps = max(1, self.steps), 0
            for f in self.rewards:
                failed, seconds = f.stats.take_window()
                logs[f"rewards/{f.__name__}/failures"] = failed
                logs[f"rewards/{f.__name__}/seconds"] = seconds / steps
            self._write_failures(state.global_step)

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
