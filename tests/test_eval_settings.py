"""TRL's evaluation settings against the data the run has (rule trainer.eval, r1exp/checks/trainer.py).

r1exp passes TRL an eval_dataset only from data.eval_split (r1exp/build.py). transformers' Trainer refuses an eval
strategy other than "no" without one, after the model has loaded (exit 1); do_eval alone does nothing there. So
without data.eval_split an eval strategy, eval_on_start, load_best_model_at_end, save_strategy=best or a
metric-driven scheduler is an error before anything loads (exit 2), and metric_for_best_model alone a warning (it
changes nothing). With a held-out split TRL evaluates, and its eval batch must hold whole groups (rule trainer.batch).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
from pathlib import Path

import pytest

import r1exp.__main__ as entry
from r1exp.checks.validate import validate
from r1exp.config.compose import compose
from r1exp.machine.facts import detect

HERE = detect()

# (overrides, the key flagged, its severity, words in the fix)
FLAGGED = [
    (["+trainer.do_eval=true", "+trainer.eval_strategy=steps"], "trainer.eval_strategy", "error",
     "trainer.eval_strategy=no"),
    (["+trainer.eval_strategy=steps"], "trainer.eval_strategy", "error", "trainer.eval_strategy=no"),
    (["+trainer.eval_strategy=epoch"], "trainer.eval_strategy", "error", "trainer.eval_strategy=no"),
    (["+trainer.eval_strategy=steps", "+trainer.eval_steps=5"], "trainer.eval_strategy", "error",
     "trainer.eval_strategy=no"),
    (["+trainer.eval_on_start=true"], "trainer.eval_on_start", "error", "trainer.eval_on_start=false"),
    (["+trainer.load_best_model_at_end=true"], "trainer.load_best_model_at_end", "error",
     "trainer.load_best_model_at_end=false"),
    (["trainer.save_strategy=best"], "trainer.save_strategy", "error", "trainer.save_strategy=no"),
    (["trainer.lr_scheduler_type=reduce_lr_on_plateau"], "trainer.lr_scheduler_type", "error",
     "trainer.lr_scheduler_type=constant"),
    (["trainer.lr_scheduler_type=greedy"], "trainer.lr_scheduler_type", "error", "trainer.lr_scheduler_type=constant"),
    (["+trainer.metric_for_best_model=reward"], "trainer.metric_for_best_model", "warning",
     "drop trainer.metric_for_best_model"),
]

# Settings that must not be flagged: evaluation switched off, or keys that do nothing without a strategy.
NOT_FLAGGED = [
    [],
    ["+trainer.do_eval=true"],
    ["+trainer.do_eval=true", "+trainer.eval_strategy=no"],
    ["+trainer.eval_strategy=no", "+trainer.eval_steps=5"],
    ["+trainer.eval_steps=5"],
    ["+trainer.per_device_eval_batch_size=4"],
    ["+trainer.eval_on_start=false"],
    ["+trainer.load_best_model_at_end=false"],
    ["trainer.save_strategy=steps"],
    ["trainer.lr_scheduler_type=cosine"],
    ["+trainer.metric_for_best_model=null"],
]


def eval_problems(overrides):
    return [p for p in validate(compose(overrides), HERE, dry_run=True) if p.rule == "trainer.eval"]


@pytest.mark.parametrize("overrides, key, severity, fix", FLAGGED, ids=[" ".join(f[0]) for f in FLAGGED])
def test_evaluation_settings_without_eval_data_are_flagged(overrides, key, severity, fix):
    problems = eval_problems(overrides)
    assert [(p.key, p.severity) for p in problems] == [(key, severity)], [p.render() for p in problems]
    assert "r1exp passes no eval_dataset to TRL" in problems[0].why
    assert fix in problems[0].fix


@pytest.mark.parametrize("overrides", NOT_FLAGGED, ids=[" ".join(o) or "defaults" for o in NOT_FLAGGED])
def test_settings_that_do_not_evaluate_are_not_flagged(overrides):
    assert eval_problems(overrides) == []


def test_metric_for_best_model_is_not_warned_about_twice():
    problems = eval_problems(["+trainer.load_best_model_at_end=true", "+trainer.metric_for_best_model=reward"])
    assert [p.key for p in problems] == ["trainer.load_best_model_at_end"]


def test_an_eval_strategy_stops_the_dry_run_with_exit_2_and_no_traceback():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main(["+trainer.do_eval=true", "+trainer.eval_strategy=steps", "dry_run=true", "logger=none"])
    assert code == 2, out.getvalue()[-3000:]
    assert "error [trainer.eval]: trainer.eval_strategy = 'steps'" in out.getvalue()
    assert "Traceback" not in out.getvalue()


def test_the_rule_rests_on_what_the_build_and_transformers_do():
    """The premises, read from source: r1exp's build passes an eval_dataset only from data.eval_split, and the
    installed transformers refuses an eval strategy without one."""
    from r1exp import build, data

    assert "eval_dataset=held_out" in inspect.getsource(build)
    assert data.build_eval_dataset(compose(["data=jsonl", "data.path=x.jsonl"]).data) is None
    trainer = Path(importlib.util.find_spec("transformers").origin).parent / "trainer.py"
    assert "but you didn't pass an `eval_dataset`" in trainer.read_text()


@pytest.fixture
def splits(tmp_path):
    """A folder `datasets` reads as two splits (train.jsonl, test.jsonl), and one file of records."""
    folder = tmp_path / "math"
    folder.mkdir()
    for split, n in (("train", 8), ("test", 4)):
        (folder / f"{split}.jsonl").write_text("".join(f'{{"question": "What is {i} + 1?", "answer": "{i + 1}"}}\n'
                                                      for i in range(n)))
    return folder


def test_a_held_out_split_lets_trl_evaluate(splits):
    cfg = compose(["data=jsonl", f"data.path={splits}", "data.eval_split=test", "+trainer.eval_strategy=steps",
                   "+trainer.eval_steps=5", "+trainer.per_device_eval_batch_size=8"])
    assert [p for p in validate(cfg, HERE, dry_run=True) if p.severity == "error"] == []
    from r1exp import data

    held_out = data.build_eval_dataset(cfg.data)
    assert len(held_out) == 4 and held_out[0]["answer"] == "1"


@pytest.mark.parametrize("overrides, rule, key", [
    (["data.eval_split=train"], "data.eval_split", "data.eval_split"),                    # the training split again
    (["+trainer.per_device_eval_batch_size=3"], "trainer.batch", "trainer.per_device_eval_batch_size"),
])
def test_a_held_out_split_is_checked(splits, overrides, rule, key):
    base = ["data=jsonl", f"data.path={splits}", "data.eval_split=test", "+trainer.eval_strategy=steps"]
    errors = [p for p in validate(compose(base + overrides), HERE, dry_run=True) if p.severity == "error"]
    assert [(p.rule, p.key) for p in errors] == [(rule, key)]


def test_one_file_of_records_has_no_held_out_split(splits):
    errors = [p for p in validate(compose(["data=jsonl", f"data.path={splits / 'train.jsonl'}",
                                           "data.eval_split=test", "+trainer.eval_strategy=steps"]), HERE,
                                  dry_run=True) if p.severity == "error"]
    assert [(p.rule, p.key) for p in errors] == [("data.eval_split", "data.eval_split")]
    assert "read the training records again" in errors[0].why
