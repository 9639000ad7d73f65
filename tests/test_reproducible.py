"""reproducible=true, the deterministic mode, as measured on the H200 (bench/results/gpu/reproducible): two runs of
the same config give identical metrics for 20 steps, the normal mode does not, and the cost the dry run prints is
the committed measurement. The GPU runs themselves are in the committed folder; these tests read them."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from r1exp.engines.vllm_colocate import VllmColocate

ROOT = Path(__file__).resolve().parent.parent
H200 = ROOT / "bench" / "results" / "gpu" / "reproducible"
COMPARE = ROOT / "bench" / "gpu" / "same_metrics.py"


def median_step(run: str) -> float:
    rows = [json.loads(line) for line in (H200 / run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["step_time"] for r in rows if "step_time" in r and r["step"] > 1)


def same(a: str, b: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(COMPARE), str(H200 / a), str(H200 / b)], capture_output=True, text=True)


def test_two_deterministic_h200_runs_are_identical_for_20_steps():
    result = same("deterministic_1", "deterministic_2")
    assert result.returncode == 0, result.stdout
    assert json.loads((H200 / "deterministic_1" / "run.json").read_text())["config"]["reproducible"] is True
    assert sum(1 for _ in (H200 / "deterministic_1" / "metrics.jsonl").open()) >= 20


@pytest.mark.parametrize("a,b", [("normal_1", "normal_2"), ("deterministic_1", "normal_1")])
def test_without_the_mode_gpu_reruns_differ(a, b):
    assert same(a, b).returncode == 1


def test_the_cost_the_dry_run_prints_is_the_measured_one():
    measured = ((median_step("deterministic_1") + median_step("deterministic_2"))
                / (median_step("normal_1") + median_step("normal_2")))
    assert measured == pytest.approx(VllmColocate.DETERMINISTIC_SLOWDOWN, rel=0.15)


def test_the_dry_run_prints_the_cost(capsys, tmp_path):
    from r1exp.__main__ import main

    assert main(["reproducible=true", "dry_run=true", "logger=none", f"hydra.run.dir={tmp_path}"]) == 0
    assert "reproducible=true (deterministic mode) costs about 3x" in capsys.readouterr().out


VERDICTS = [  # (saved run, rerun, criterion, what the verdict must say) — reruns of one config on the H200
    ("normal_1", "normal_2", "noise", "reproduced within noise"),
    ("normal_1", "normal_lr_x10", "noise", "differs beyond noise"),     # learning rate 1e-4 instead of 1e-5
    ("deterministic_1", "deterministic_2", "exact", "identical at every one of 20 steps"),
]


@pytest.mark.parametrize("saved,rerun,criterion,says", VERDICTS)
def test_the_reproduce_verdict_on_h200_reruns(saved, rerun, criterion, says):
    from r1exp.records.verdict import compare, render

    def rows(run):
        return [json.loads(line) for line in (H200 / run / "metrics.jsonl").read_text().splitlines()]

    assert says in render(compare(rows(saved), rows(rerun), criterion=criterion))
