"""The closing summary: what it says for a run that ended ok, failed or was interrupted, read from the run folder
(run.json, metrics.jsonl, error.txt, checkpoints, W&B files). The summary of a real default run is checked in
test_end_to_end.py, a real sweep's in test_sweep.py."""

from __future__ import annotations

import io
import json
import time

import pytest

from r1exp.observe import summary


def make_run(tmp_path, status="ok", exit_code=0, steps=20, error=None, gpu=None, files=(), **fields):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"step": i, "reward": 0.1 + 0.05 * i, "rewards/accuracy/mean": 0.01 * i, "rewards/format/mean": 0.1}
            for i in range(1, steps + 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"status": status, "exit_code": exit_code, "error": error, "config": {"trainer": {"max_steps": 50},
                "logger": {"name": "wandb"}}, "phases": {"startup": 5.0, "checks": 1.0, "build": 20.0,
                "train": 30.0, "save": 1.0, "total": 57.0, "last": "save"}, "plan": {"total_gb": 36.3}, **fields}
    if gpu:
        manifest["gpu_memory"] = {"gpu/peak_used_gb": gpu}
    for name in files:
        (run_dir / name).mkdir(parents=True)
    return run_dir, manifest


def lines_of(run_dir, manifest) -> dict:
    title, lines = summary.run_summary(run_dir, manifest)
    return {"title": title, **dict(lines)}


def test_an_ok_run_says_how_it_went_where_it_is_and_what_to_do_next(tmp_path):
    run_dir, manifest = make_run(tmp_path, files=["wandb/offline-run-20261125_1-abc"])
    (run_dir / "reward_curve.png").write_bytes(b"png")
    s = lines_of(run_dir, manifest)
    assert s["title"] == "run ok (exit 0)"
    assert s["folder"] == str(run_dir)
    assert s["wall time"] == "57.0 s (startup 5.0, checks 1.0, build 20.0, train 30.0, save 1.0)"
    assert s["steps"] == "20 of 50 (rewards: mean of the first 2 -> the last 2)"
    assert s["reward"] == "0.175 -> 1.075  (+0.900)"
    assert s["  accuracy"] == "0.015 -> 0.195  (+0.180)" and s["  format"] == "0.100 -> 0.100  (+0.000)"
    assert s["reward curve"] == str(run_dir / "reward_curve.png")
    assert s["W&B (offline)"] == f"wandb sync {run_dir / 'wandb/offline-run-20261125_1-abc'}"
    assert s["reproduce"] == f"python -m r1exp.reproduce {run_dir}"
    assert "GPU memory" not in s and "resume" not in s and "failed" not in s


def test_gpu_memory_next_to_the_plan_and_the_wandb_url_of_an_online_run(tmp_path):
    run_dir, manifest = make_run(tmp_path, gpu=38.2, wandb_url="https://wandb.ai/me/r1exp/runs/abc")
    s = lines_of(run_dir, manifest)
    assert s["GPU memory"] == "peak 38.2 GiB, planned 36.3 GiB (+5%)"
    assert s["W&B"] == "https://wandb.ai/me/r1exp/runs/abc"


def test_a_failed_run_says_what_failed_where_the_traceback_is_and_how_to_run_it_again(tmp_path):
    run_dir, manifest = make_run(tmp_path, "failed", 1, steps=3, error="RuntimeError: boom\nmore")
    manifest["phases"]["last"] = "train"
    (run_dir / summary.ERROR_FILE).write_text("Traceback ...")
    s = lines_of(run_dir, manifest)
    assert s["title"] == "run failed (exit 1)"
    assert s["failed"] == "error during train: RuntimeError: boom"
    assert s["traceback"] == str(run_dir / "error.txt")
    assert s["checkpoint"] == "none (no step was saved)" and "resume" not in s
    assert s["run again"] == f"python -m r1exp.reproduce {run_dir}"


def test_an_interrupted_run_names_its_checkpoint_and_the_resume_command(tmp_path):
    run_dir, manifest = make_run(tmp_path, "interrupted", 143, steps=5, files=["trainer/checkpoint-5"])
    manifest["phases"]["last"] = "train"
    s = lines_of(run_dir, manifest)
    assert s["stopped"] == "by a signal (exit 143) during train"
    assert s["checkpoint"] == str(run_dir / "trainer/checkpoint-5")
    assert s["resume"] == f"python -m r1exp.reproduce {run_dir} resume=true"


def test_a_configuration_problem_after_the_build_points_at_the_message_above(tmp_path):
    run_dir, manifest = make_run(tmp_path, "failed", 2, steps=0, error="error [engine.check]: ...")
    manifest["phases"]["last"] = "build"
    s = lines_of(run_dir, manifest)
    assert s["failed"].startswith("configuration problem (the full message is above) during build: error [engine")
    assert "steps" not in s


def test_the_printed_summary_keeps_paths_on_one_line_and_goes_to_train_log(tmp_path):
    from rich.console import Console

    run_dir, manifest = make_run(tmp_path)
    out = io.StringIO()
    summary.print_run_summary(run_dir, manifest, console=Console(file=out, width=40))
    assert f"python -m r1exp.reproduce {run_dir}" in out.getvalue()  # not wrapped at 40 columns
    assert "run ok (exit 0)" in (run_dir / "train.log").read_text()


def test_a_broken_run_folder_does_not_make_the_summary_raise(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "metrics.jsonl").mkdir(parents=True)   # unreadable as a file
    summary.print_run_summary(run_dir, {"status": "failed", "exit_code": 1})
    assert "no closing summary" in capsys.readouterr().out


def test_a_metrics_line_cut_short_does_not_cost_the_summary(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "rew')  # killed while writing
    summary.print_run_summary(run_dir, {"status": "failed", "exit_code": 1})
    out = capsys.readouterr().out
    assert "run failed (exit 1)" in out and "no closing summary" not in out


def test_phase_clock_splits_the_wall_time_and_names_the_last_phase():
    clock = summary.PhaseClock()
    time.sleep(0.02)
    clock.enter("build")
    time.sleep(0.01)
    clock.enter("train")
    phases = clock.stop()
    assert phases["checks"] >= 0.02 and phases["build"] >= 0.01 and phases["last"] == "train"
    assert phases["total"] == pytest.approx(sum(v for k, v in phases.items() if k not in ("total", "last")), abs=0.02)


def test_the_saved_traceback_has_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "sk-live-test-secret-1234")
    try:
        raise RuntimeError("login failed with key sk-live-test-secret-1234")
    except RuntimeError:
        path = summary.save_traceback(tmp_path)
    text = path.read_text()
    assert text.startswith("Traceback") and "RuntimeError: login failed with key" in text
    assert "sk-live-test-secret-1234" not in text
