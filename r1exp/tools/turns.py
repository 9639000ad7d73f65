"""Turns per completion in a tool run: TRL logs `tools/call_frequency` and `tools/failure_frequency`; r1exp adds
`tools/turns`, the mean number of assistant turns per completion (1 = answered without a tool round)."""

from __future__ import annotations


def turns(completion) -> int:
    """Assistant turns of a completion (a list of chat messages); 1 for plain text."""
    if isinstance(completion, list):
        return max(1, sum(1 for m in completion if isinstance(m, dict) and m.get("role") == "assistant"))
    return 1


def log_turns(completions, log_metric) -> None:
    """Observer of the first reward (r1exp.rewards.guard.GuardedReward.observers): TRL's `log_metric` averages the
    value over the step and logs it with the step's metrics."""
    if log_metric is None or not completions:
        return
    log_metric("tools/turns", sum(turns(c) for c in completions) / len(completions))
