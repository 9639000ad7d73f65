"""reproducible=true, the deterministic mode, as measured on the H200 (bench/results/h200/session3): two runs of
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
H200 = ROOT / "bench" / "results" / "h200" / "session3"
COMPARE = ROOT / "bench" / "gpu" / "same_metrics.py"


def median_step(run: str) -> float:
    rows = [json.loads(line) for line in (H200 / run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["step_time"] for r in rows if "step_time" in r and r["step"] > 1)


def same(a: str, b: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(COMPARE), str(H200 / a), str(H200 / b)], capture_output=True, text=True)


def test_two_deterministic_h200_runs_are_identical_for_20_steps():
    result = same("det_a", "det_b")
    assert result.returncode == 0, result.stdout
    assert json.loads((H200 / "det_a" / "run.json").read_text())["config"]["reproducible"] is True
    assert sum(1 for _ in (H200 / "det_a" / "metrics.jsonl").open()) >= 20


@pytest.mark.parametrize("a,b", [("normal_20", "normal_20b"), ("det_a", "normal_20")])
def test_without_the_mode_gpu_reruns_differ(a, b):
    assert same(a, b).returncode == 1


def test_the_cost_the_dry_run_prints_is_the_measured_one():
    measured = (median_step("det_a") + median_step("det_b")) / (median_step("normal_20") + median_step("normal_20b"))
    assert measured == pytest.approx(VllmColocate.DETERMINISTIC_SLOWDOWN, rel=0.15)


def test_the_dry_run_prints_the_cost(capsys, tmp_path):
    from r1exp.__main__ import main

    assert main(["reproducible=true", "dry_run=true", "logger=none", f"hydra.run.dir={tmp_path}"]) == 0
    assert "reproducible=true (deterministic mode) costs about 3x" in capsys.readouterr().out


VERDICTS = [  # (saved run, rerun, criterion, what the verdict must say) — reruns of one config on the H200
    ("normal_20", "normal_20b", "noise", "reproduced within noise"),
    ("normal_20", "normal_20_lr", "noise", "differs beyond noise"),     # learning rate 1e-4 instead of 1e-5
    ("det_a", "det_b", "exact", "identical at every one of 20 steps"),
]


@pytest.mark.parametrize("saved,rerun,criterion,says", VERDICTS)
def test_the_reproduce_verdict_on_h200_reruns(saved, rerun, criterion, says):
    from r1exp.records.verdict import compare, render

    def rows(run):
        return [json.loads(line) for line in (H200 / run / "metrics.jsonl").read_text().splitlines()]

    assert says in render(compare(rows(saved), rows(rerun), criterion=criterion))
