"""Interrupt and resume as a specification, with real signals sent to the real `python -m r1exp` process.

A run that gets SIGTERM (or Ctrl-C = SIGINT) during training finishes its step, saves a checkpoint, marks
run.json `interrupted` and exits with 128 + the signal. `python -m r1exp.reproduce RUN_DIR resume=true` continues
it in the same folder: the steps go on from the checkpoint, each logged once, and run.json keeps the interrupted
attempt. (resume=true with no checkpoint is a usage error: see the failed jobs in tests/test_sweep.py.)
Slow: the same for SIGINT, and the resumed run's metrics equal those of a run never interrupted, bit for bit,
with engine=hf and with engine=vllm.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from r1exp.records import metrics
from r1exp.reproduce import VOLATILE

MAX_STEPS = 6


def interrupted_run(run_dir: Path, sig: int, args: tuple, watch: Path | None = None, after_steps: int = 2,
                    timeout: float = 600) -> tuple[int, str]:
    """Start `python -m r1exp ARGS`, send `sig` once `after_steps` steps are logged in `watch` (run_dir by
    default), return (exit status, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watch = watch or run_dir
    log = run_dir.parent / f"{run_dir.name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "r1exp", *args], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while len(metrics.step_rows(metrics.read_metrics(watch))) < after_steps:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run logged no steps in time"
            time.sleep(0.1)
        proc.send_signal(sig)
        code = proc.wait(timeout=300)
    return code, log.read_text()


def resume(run_dir: Path):
    return run_cli([str(run_dir), "resume=true"], run_dir, module="r1exp.reproduce")


def steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in metrics.step_rows(metrics.read_metrics(run_dir))]


def check_interrupted_then_resumed(run_dir: Path, sig: int, *extra: str) -> None:
    args = (f"hydra.run.dir={run_dir}", "logger=none", f"trainer.max_steps={MAX_STEPS}", *extra)
    code, output = interrupted_run(run_dir, sig, args=args)
    assert code == 128 + sig, output[-3000:]
    assert f"{signal.Signals(sig).name} received; saving a checkpoint" in output
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["exit_code"] == 128 + sig
    checkpoint = Path(manifest["checkpoint"])
    stopped_at = int(checkpoint.name.split("-")[1])
    assert checkpoint.parent == run_dir / "trainer" and 2 <= stopped_at < MAX_STEPS
    assert steps(run_dir) == list(range(1, stopped_at + 1))
    assert not (run_dir / "adapter").exists()  # an interrupted run does not look finished
    closing = output[output.rindex(f"run interrupted (exit {128 + sig})"):]  # the closing summary says what next
    assert re.search(rf"checkpoint\s+{re.escape(str(checkpoint))}$", closing, re.M), closing
    assert re.search(rf"resume\s+python -m r1exp.reproduce {re.escape(str(run_dir))} resume=true$", closing, re.M)

    result = resume(run_dir)
    assert result.code == 0, result.output[-3000:]
    assert steps(run_dir) == list(range(1, MAX_STEPS + 1))  # continued, each step once, no restart at 0
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "ok" and (run_dir / "adapter" / "adapter_config.json").exists()
    assert [(a["status"], a["exit_code"]) for a in manifest["attempts"]] == [("interrupted", 128 + sig)]
    assert manifest["config"]["resume"] is True


def test_sigterm_saves_a_checkpoint_and_resume_continues_the_steps(tmp_path):
    check_interrupted_then_resumed(tmp_path / "run", signal.SIGTERM)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_continues_the_steps(tmp_path):
    check_interrupted_then_resumed(tmp_path / "run", signal.SIGINT)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_a_resumed_run_logs_what_an_uninterrupted_run_logs(tmp_path, engine):
    """Bit for bit, with either engine. (engine=vllm needs r1exp.patches.exact_sync: TRL's merge and unmerge of
    the LoRA at every weight sync used to leave rounding in the base weights of a run that never stopped, while a
    resumed run starts from clean ones; the resumed steps then differed by ~3e-7 and their sampling drifted.)"""
    check_interrupted_then_resumed(tmp_path / "resumed", signal.SIGTERM, f"engine={engine}")
    whole = run_cli(["logger=none", f"engine={engine}", f"trainer.max_steps={MAX_STEPS}"], tmp_path / "whole")
    assert whole.code == 0, whole.output[-3000:]

    def compared(run_dir):
        return [{k: v for k, v in r.items() if not VOLATILE.search(k)}
                for r in metrics.step_rows(metrics.read_metrics(run_dir))]

    assert compared(tmp_path / "resumed") == compared(tmp_path / "whole")


def test_metrics_are_cut_back_to_the_checkpoint_without_the_interrupted_attempts_end_line(tmp_path):
    """A run stopped at step 3 saved a checkpoint there and logged TRL's end-of-training line: a resume repeats
    nothing before step 3, and the end line does not stay in the middle of the resumed run's rows. A line cut short
    by a killed writer is read as absent, not as an error."""
    import json

    from r1exp.records.metrics import read_metrics, truncate_metrics

    rows = [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.2}, {"step": 3, "reward": 0.3},
            {"step": 3, "train_runtime": 9.0}, {"step": 4, "reward": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "rew')
    assert len(read_metrics(tmp_path)) == 5
    assert truncate_metrics(tmp_path, after_step=3) == 2
    assert read_metrics(tmp_path) == rows[:3]
