"""Held-out evaluation's prompts, checks and command line (r1exp/evaluation/, r1exp/eval.py). A real run that
evaluates, and the command scoring its adapter, are in tests/test_end_to_end.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from r1exp import data
from r1exp.checks.validate import validate
from r1exp.config.compose import compose
from r1exp.evaluation import heldout
from r1exp.machine.facts import detect

HERE = detect()


def test_a_generated_task_trains_without_its_held_out_questions():
    cfg = compose(["eval=heldout"])
    held = heldout.heldout_rows(cfg, 64)
    questions = {r["prompt"][-1]["content"] for r in held}
    keep = heldout.training_filter(cfg)
    trained = {r["prompt"][-1]["content"] for r in data.rows(cfg.data) if keep(r)}
    assert questions and not questions & trained            # disjoint by construction
    assert len(questions) == len(held)                      # distinct questions
    assert heldout.overlap(held, [r["prompt"] for r in data.rows(cfg.data) if keep(r)]) == 0


@pytest.mark.parametrize("rewards, correct", [
    ("[accuracy,format]", "accuracy"), ("[format,exact]", "exact"), ("[numeric]", "numeric"), ("[format]", None),
])
def test_auto_takes_the_first_reward_that_checks_the_answer(rewards, correct):
    assert heldout.correctness_reward(compose([f"reward={rewards}"])) == correct


def test_without_eval_the_training_data_is_whole():
    assert heldout.training_filter(compose(["eval=none"])) is None


def test_a_file_holds_out_the_records_after_num_samples(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "answer": str(i)}) + "\n" for i in range(10)))
    cfg = compose(["data=jsonl", f"data.path={path}", "data.num_samples=6", "eval=heldout", "eval.prompts=3"])
    held = heldout.heldout_rows(cfg, 3)
    assert [r["answer"] for r in held] == ["6", "7", "8"]
    assert heldout.overlap(held, [r["prompt"] for r in data.rows(cfg.data)]) == 0
    assert heldout.overlap(held, [r["prompt"] for r in held[:2]]) == 2   # a split that repeats training questions


def test_a_split_is_read_as_the_held_out_prompts(tmp_path):
    folder = tmp_path / "qa"
    folder.mkdir()
    for split, n in (("train", 5), ("test", 2)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"question": f"{split}{i}?", "answer": str(i)})
                                                       + "\n" for i in range(n)))
    cfg = compose(["data=jsonl", f"data.path={folder}", "data.eval_split=test", "eval=heldout"])
    assert [r["prompt"][-1]["content"] for r in heldout.heldout_rows(cfg, 64)] == ["test0?", "test1?"]


@pytest.mark.parametrize("overrides, rule, key, severity", [
    (["eval.correct=nope"], "eval.correct", "eval.correct", "error"),
    (["reward=[format]"], "eval.correct", "eval.correct", "warning"),     # auto finds no correctness reward
    (["eval.k=4"], "eval.sampling", "eval.temperature", "warning"),
    (["eval.max_tokens=500"], "eval.max_tokens", "eval.max_tokens", "error"),
    (["eval.k=0"], "range", "eval.k", "error"),
    (["+eval.promtps=3"], "schema.key", "eval.promtps", "error"),
    (["data=jsonl", "data.path=x.jsonl"], "eval.data", "eval.name", "warning"),   # nothing held out: skipped
])
def test_eval_settings_are_checked(overrides, rule, key, severity):
    found = [(p.rule, p.key, p.severity) for p in validate(compose(["eval=heldout", *overrides]), HERE, dry_run=True)
             if p.rule == rule]
    assert (rule, key, severity) in found


@pytest.mark.parametrize("overrides", [["eval=none"], ["eval=heldout"], ["eval.k=4", "eval.temperature=1.0"],
                                       ["eval.every_steps=10"], ["reward=[exact]"], ["eval.correct=accuracy"]])
def test_eval_settings_that_work_pass(overrides):
    assert [p for p in validate(compose(overrides), HERE, dry_run=True) if p.severity == "error"] == []


@pytest.mark.parametrize("args, says", [
    (["/no/such/run"], "no such run folder"),
    (["--bogus"], "unknown option"),
    (["--base"], "give the run folder"),
    (["eval.k=0"], "eval.k"),
    (["data.eval_spilt=test"], "data.eval_spilt"),
])
def test_the_eval_command_refuses_bad_input_with_exit_2(args, says, tmp_path):
    done = subprocess.run([sys.executable, "-m", "r1exp.eval", *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_eval_command_refuses_a_folder_that_is_not_a_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "r1exp.eval", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "not an r1exp run folder" in done.stderr


def test_the_committed_eval_benchmark_meets_its_target():
    """bench/eval_speed.py, side by side in one process: the evaluation of N prompts costs at most 1.2x what vLLM
    alone needs for the same prompts and settings (its command and raw timings are in the file)."""
    from pathlib import Path

    result = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" / "cpu" / "eval_speed.json")
                        .read_text())
    assert result["prompts"] >= 32 and len(result["r1exp_eval_s"]) == len(result["vllm_alone_s"]) >= 5
    assert result["ratio"] <= 1.2, result


def test_a_run_evaluates_during_training_with_k_samples_on_transformers_generate(tmp_path):
    """engine=hf: the evaluation generates with transformers' generate on the trainer's model; every_steps adds the
    evaluations between baseline and final; k=2 sampled adds pass@2 and maj@2."""
    from conftest import run_cli

    result = run_cli(["engine=hf", "trainer.max_steps=4", "eval.every_steps=2", "eval.k=2", "eval.temperature=1.0",
                      "logger=none"], tmp_path / "run", timeout=600)
    assert result.code == 0, result.output[-3000:]
    block = json.loads((result.run_dir / "run.json").read_text())["eval"]
    assert [s["step"] for s in block["steps"]] == [2] and block["final"]["step"] == 4
    for scores in (block["baseline"], *block["steps"], block["final"]):
        assert {"pass@1", "pass@2", "maj@2", "reward/accuracy", "completion_length"} <= set(scores)
        assert 0 <= scores["pass@1"] <= scores["pass@2"] <= 1
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/pass@2" in r] == [0, 2, 4]


def test_the_gpu_run_evaluated_with_the_colocated_engine():
    """bench/results/gpu/evaluation/normal_1: an H100 run (peft, in-process vLLM) with the default eval."""
    from pathlib import Path

    run = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu" / "evaluation" / "normal_1"
                      / "run.json").read_text())
    assert run["status"] == "ok" and run["device"].startswith("cuda")
    assert run["eval"]["baseline"]["step"] == 0 and run["eval"]["final"]["step"] == run["config"]["trainer"]["max_steps"]
