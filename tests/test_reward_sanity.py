"""The reward sanity check and reward health during training.

Before training, a reward that cannot tell a good completion from a bad one, or that raises, stops the run with
exit status 2, naming the reward, an example and the likely cause; in a dry run too. During training, a reward that
raises on some completions costs those completions' scores (counted in metrics.jsonl, logged with the completion);
past checks.max_reward_failure_rate the run stops. The broken rewards below are real functions the CLI imports by
`_target_` (tests.test_reward_sanity.<name>).
"""

from __future__ import annotations

import json
import re

import pytest

from r1exp.config.compose import compose
from r1exp.rewards.sanity import check_rewards, dry_run_sanity, render
from r1exp.rewards.text import completion_text


# --- rewards with the mistakes the check is for --------------------------------------------------------------------

def wrong_column_always_zero(completions, **kwargs):
    """Reads `solution` (open-r1's column name) where the data says `answer`: silently 0 for everything."""
    gold = kwargs.get("solution") or [None] * len(completions)
    return [1.0 if g is not None and g in completion_text(c) else 0.0 for c, g in zip(completions, gold)]


def wrong_column_raises(completions, **kwargs):
    return [float(s in completion_text(c)) for c, s in zip(completions, kwargs["solution"])]


def no_opinion(completions, **kwargs):
    return [None for _ in completions]


def one_score_only(completions, **kwargs):
    return [1.0]


def a_number(completions, **kwargs):
    return 1.0


def raises_on_odd_lengths(completions, **kwargs):
    """A parser that chokes on about half of all completions, whatever the model writes."""
    scores = []
    for c in completions:
        if len(completion_text(c)) % 2:
            raise ValueError("cannot parse an odd-length completion")
        scores.append(1.0)
    return scores


def target(fn) -> list[str]:
    return [f"+reward.mine._target_=tests.test_reward_sanity.{fn.__name__}"]


def sanity(overrides):
    return check_rewards(compose(overrides))


# --- the library passes on its own data -------------------------------------------------------------------------

LIBRARY_RUNS = [
    ["reward=[accuracy,format,exact,numeric,tag_count,reasoning_steps,repetition,length,cosine,overlong,custom]"],
    ["data=countdown", "reward=[countdown,format,tag_count,accuracy]"],
]


@pytest.mark.parametrize("overrides", LIBRARY_RUNS)
def test_library_rewards_tell_good_from_bad(overrides):
    report = sanity(overrides)
    assert report.problems == [], [p.render() for p in report.problems]
    assert all(v.preferred >= 0.9 and v.good_mean > v.bad_mean for v in report.verdicts)


def test_format_is_judged_on_format_not_on_the_answer():
    """A format reward cannot tell a right answer from a wrong one, both well formatted: asking it to fails."""
    assert sanity(["reward=[format]"]).problems == []
    problems = sanity(["reward=[format]", "+reward.format.sanity_probe=answer"]).problems
    assert len(problems) == 1 and "cannot tell the gold answer from a wrong answer" in problems[0].why


def test_probe_none_skips_a_reward():
    report = sanity(["reward=[accuracy]", *target(no_opinion), "+reward.mine.sanity_probe=none"])
    assert [v.label for v in report.verdicts] == ["accuracy"] and report.problems == []


# --- broken rewards: (reward, words in why, words in fix) ----------------------------------------------------------

BROKEN = [
    (wrong_column_always_zero, "cannot tell the gold answer from a wrong answer", "the data's columns: answer"),
    (wrong_column_raises, "it raised KeyError: 'solution'", "likely a column mismatch: the data's columns are answer"),
    (no_opinion, "gave no score (None) to any of 16 rows", "the gold answers may not parse"),
    (one_score_only, "returned 1 scores for 32 completions", "one float (or None) per completion"),
    (a_number, "returned 1.0 (float); expected a list", "one float (or None) per completion"),
]


@pytest.mark.parametrize("fn,why,fix", BROKEN)
def test_a_broken_reward_is_named_with_an_example_and_the_likely_cause(fn, why, fix):
    problems = sanity(["reward=[accuracy]", *target(fn)]).problems
    assert len(problems) == 1
    p = problems[0]
    assert (p.key, p.value, p.rule) == ("reward.mine", f"tests.test_reward_sanity.{fn.__name__}", "reward.sanity")
    assert why in p.why and fix in p.fix
    assert "example: question 'What is" in p.fix and "scored" in p.fix


def test_the_check_reads_the_rows_rewards_will_see():
    report = sanity(["data=countdown", "reward=[countdown]", "checks.reward_sanity_samples=4"])
    (verdict,) = report.verdicts
    assert (verdict.good_mean, verdict.bad_mean, verdict.preferred) == (1.0, 0.0, 1.0)


def test_dry_run_checks_only_local_data():
    assert "not local" in dry_run_sanity(compose(["data=gsm8k"])).skipped
    assert dry_run_sanity(compose(["checks.reward_sanity=false"])).skipped == "checks.reward_sanity=false"
    assert render(dry_run_sanity(compose([]))).splitlines()[1].split()[:2] == ["ok", "accuracy"]


# --- through the CLI ----------------------------------------------------------------------------------------------

def test_dry_run_stops_on_a_broken_reward(cli):
    result = cli("dry_run=true", *target(wrong_column_always_zero))
    assert result.code == 2, result.output
    assert "reward.mine" in result.stderr and "reward sanity check" in result.stderr
    assert "Traceback" not in result.output and not result.run_dir.exists()


def test_dry_run_reports_the_check(cli):
    result = cli("dry_run=true")
    assert result.code == 0, result.output
    assert "reward sanity check" in result.stdout and "ok      accuracy" in result.stdout


def test_a_run_with_a_broken_reward_stops_before_loading_the_model(cli):
    result = cli("logger=none", "checks.reward_sanity_samples=4", *target(wrong_column_raises))
    assert result.code == 2, result.output
    assert "reward.mine" in result.output and "KeyError" in result.output and "Traceback" not in result.output
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert manifest["status"] == "failed" and "reward sanity check" in manifest["error"]
    assert not (result.run_dir / "adapter").exists() and not (result.run_dir / "metrics.jsonl").exists()


def _flaky_run(cli, *more):
    return cli("logger=none", "trainer.max_steps=2", "trainer.per_device_train_batch_size=16", *target(
        raises_on_odd_lengths), "+reward.mine.sanity_probe=none", *more)


def test_a_reward_that_raises_on_some_completions_does_not_kill_the_run(cli):
    result = _flaky_run(cli, "checks.max_reward_failure_rate=1.0")
    assert result.code == 0, result.output
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2
    failures = [r["rewards/mine/failures"] for r in steps]
    assert all(r["rewards/accuracy/failures"] == 0 for r in steps) and sum(failures) > 0
    assert all(r["rewards/mine/seconds"] > 0 and r["rewards/accuracy/seconds"] > 0 for r in steps)
    logged = [json.loads(line) for line in (result.run_dir / "reward_failures.jsonl").read_text().splitlines()]
    assert len(logged) == sum(failures)
    assert all(f["reward"] == "mine" and "odd-length" in f["error"] and len(f["completion"]) % 2 for f in logged)
    assert "'mine' raised ValueError: cannot parse an odd-length completion on the completion" in result.stderr


def test_too_many_reward_failures_stop_the_run(cli):
    result = _flaky_run(cli, "checks.max_reward_failure_rate=0.0")
    assert result.code == 1, result.output
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert "RewardFailureError: reward 'mine' raised on" in manifest["error"]
    assert "checks.max_reward_failure_rate=0.0" in manifest["error"]
    error_txt = (result.run_dir / "error.txt").read_text()   # the traceback is kept, and the summary points at it
    assert error_txt.startswith("Traceback") and "RewardFailureError" in error_txt
    assert "Traceback" not in result.output   # a designed stop: its message on the console, not a traceback
    assert "r1exp: the run stopped: reward 'mine' raised on" in result.stderr
    closing = result.stdout[result.stdout.rindex("run failed (exit 1)"):]
    assert re.search(r"failed\s+error during train: RewardFailureError: reward 'mine' raised on", closing), closing
    assert re.search(rf"traceback\s+{re.escape(str(result.run_dir / 'error.txt'))}$", closing, re.M)
