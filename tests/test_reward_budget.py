"""A slow reward warns, then stops the run with a clear message (checks.reward_time_budget_s); one that hangs is
interrupted; the failures of a run that stops at its first step are written all the same."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from r1exp.errors import RunStopped
from r1exp.rewards.guard import OVER_BUDGET_STRIKES, GuardedReward, RewardFailureError, RewardTooSlowError
from r1exp.rewards.monitor import FAILURES_FILE, reward_monitor

COMPLETIONS = [[{"content": "a"}], [{"content": "b"}]]


def sleeper(seconds):
    def slow(completions, **kwargs):
        time.sleep(seconds)
        return [1.0] * len(completions)
    return slow


def test_a_reward_over_its_budget_warns_then_stops_the_run(capsys):
    reward = GuardedReward(sleeper(0.08), "slow", time_budget_s=0.05)
    for _ in range(OVER_BUDGET_STRIKES - 1):
        assert reward(prompts=None, completions=COMPLETIONS) == [1.0, 1.0]
    assert capsys.readouterr().err.count("over checks.reward_time_budget_s=0.05") == 1   # one warning
    with pytest.raises(RewardTooSlowError) as stopped:
        reward(prompts=None, completions=COMPLETIONS)
    assert isinstance(stopped.value, RunStopped)   # r1exp.run: exit 1 (training had started), failed, no traceback
    problem = stopped.value.problems[0]
    assert problem.key == "checks.reward_time_budget_s" and "'slow'" in problem.why and "faster" in problem.fix


def test_a_reward_back_under_budget_starts_the_count_again():
    times = iter([0.08, 0.08, 0.0, 0.08, 0.08, 0.0])
    reward = GuardedReward(lambda completions, **kw: (time.sleep(next(times)), [0.0] * len(completions))[1],
                           "flaky_speed", time_budget_s=0.05)
    for _ in range(6):
        reward(prompts=None, completions=COMPLETIONS)


def test_a_reward_that_hangs_is_interrupted():
    reward = GuardedReward(sleeper(30), "hangs", time_budget_s=0.1)
    start = time.perf_counter()
    with pytest.raises(RewardTooSlowError, match="interrupted"):
        reward(prompts=None, completions=COMPLETIONS)
    assert time.perf_counter() - start < 5


def test_no_budget_no_limit():
    assert GuardedReward(sleeper(0.02), "fine", time_budget_s=None)(prompts=None, completions=COMPLETIONS)


def test_failures_are_written_when_the_run_stops_at_its_first_step(tmp_path):
    def broken(completions, **kwargs):
        raise KeyError("solution")

    reward = GuardedReward(broken, "broken")
    monitor = reward_monitor(tmp_path, max_failure_rate=0.1)
    monitor.attach(SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[])), [reward])
    with pytest.raises(RewardFailureError):
        reward(prompts=None, completions=COMPLETIONS)   # step 1: no log line was ever written
    rows = [json.loads(line) for line in (tmp_path / FAILURES_FILE).read_text().splitlines()]
    assert [(r["step"], r["reward"]) for r in rows] == [(1, "broken"), (1, "broken")]
    assert "KeyError" in rows[0]["error"]
