"""`python -m r1exp dry_run=true`: the resolved choices, the memory plan and every warning, exit 0 (or 2 with the
problems), on any machine, without loading anything or creating a run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1exp import __main__ as entry
from r1exp.machine.facts import detect

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def refuse_to_run(monkeypatch):
    """A dry run never reaches Hydra's job runner; if it did, fail at once instead of training."""
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 99)


def dry(capsys, *args):
    code = entry.main(["logger=none", "dry_run=true", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_issues_example_plans_qwen7b_with_unsloth_for_a_gpu_box(cli, hf_home):
    result = cli("model=qwen7b", "loader=unsloth", "hardware.gpu_memory_gb=80", "dry_run=true",
                 env={"HF_HOME": str(hf_home)})
    assert result.code == 0, result.output
    for text in ("Qwen/Qwen2.5-7B-Instruct", "unsloth", "memory plan", "weights", "activations", "predicted peak",
                 "nothing was loaded"):
        assert text in result.output
    # planned for another machine: what this one lacks (the weights; a GPU for Unsloth) is said as a warning
    assert "warning [model.source]" in result.output
    if not detect().has_cuda:
        assert "warning [unsloth.gpu]" in result.output
    assert "Traceback" not in result.output
    assert not result.run_dir.exists()


def test_a_dry_run_answers_will_this_start_here(cli, hf_home):
    """Without hardware.* the dry run is about this machine: what would stop the run here is an error, exit 2."""
    result = cli("model=qwen7b", "loader=unsloth", "dry_run=true", env={"HF_HOME": str(hf_home)})
    assert result.code == 2, result.output
    assert "error [model.source]" in result.output and "hf download Qwen/Qwen2.5-7B-Instruct" in result.output
    assert "hardware.gpu_memory_gb=80" in result.output   # how to plan for another machine instead
    if not detect().has_cuda:
        assert "error [unsloth.gpu]" in result.output
    assert "Traceback" not in result.output and not result.run_dir.exists()


def test_the_default_dry_run_shows_every_group_and_the_plan(capsys, refuse_to_run):
    code, text = dry(capsys)
    assert code == 0, text
    for group in ("model", "loader", "engine", "data", "reward", "trainer", "logger", "machine"):
        assert f"│ {group}" in text
    assert "longest prompt ~" in text and "measured" in text
    assert "dry run: configuration is valid" in text


def test_a_gpu_plan_resolves_auto_utilization_and_shows_the_engine(capsys, refuse_to_run):
    code, text = dry(capsys, "model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=80")
    assert code == 0, text
    assert "gpu_memory_utilization=auto -> 0." in text
    assert "engine_weights" in text and "engine (utilization 0." in text
    assert "TRL colocate: the engine holds a second copy" in text


def test_a_dry_run_with_an_error_exits_2_without_a_plan(capsys, refuse_to_run):
    code, text = dry(capsys, "loader=unsloth", "engine=vllm", "loader.fast_inference=false")
    assert code == 2
    assert "error [unsloth.fast_inference]" in text and "memory plan" not in text


def test_a_dry_run_of_a_sweep_reports_each_job(capsys, refuse_to_run):
    code = entry.main(["-m", "logger=none", "dry_run=true", "trainer.learning_rate=1e-3,2e-3"])
    text = capsys.readouterr().out
    assert code == 0
    assert text.count("memory plan") == 2 and "lr=0.001" in text and "lr=0.002" in text


def test_the_dry_run_benchmark_runs_and_writes_its_results(tmp_path):
    out = tmp_path / "dry_run_time"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dry_run_time.py"), "-n", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    data = json.loads(out.with_suffix(".json").read_text())
    codes = {row["name"]: row["exit_codes"] for row in data["rows"]}
    assert codes["bad-config (exit 2)"] == [2] and all(c == [0] for n, c in codes.items() if "bad" not in n), proc.stdout
    assert all(row["median_s"] > 0 for row in data["rows"])
    assert "| command line |" in out.with_suffix(".md").read_text()
