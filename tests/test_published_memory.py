"""The memory plan against published figures (bench/published_memory.py): the committed table is what the planner
computes today, and the plan stays within its stated error on the measured figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("published_memory", ROOT / "bench" / "published_memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_committed_table_is_current():
    committed = json.loads((ROOT / "bench" / "results" / "published_memory.json").read_text())
    fresh = _bench().rows()
    assert [(r["figure"], r["planned_gib"]) for r in fresh] == [(r["figure"], r["planned_gib"]) for r in committed], \
        "the planner changed: rerun python bench/published_memory.py and commit bench/results/published_memory.*"


def test_at_least_five_published_figures_from_three_projects():
    table = json.loads((ROOT / "bench" / "results" / "published_memory.json").read_text())
    assert len(table) >= 5 and len({r["figure"].split("/")[0] for r in table}) >= 3


def test_measured_engine_figures_within_a_third():
    """vLLM's own start-up log (Unsloth's notebooks): the weights and what a fraction leaves for the KV cache."""
    table = json.loads((ROOT / "bench" / "results" / "published_memory.json").read_text())
    engine = [r for r in table if r["quantity"] in ("engine_weights", "kv_from_fraction") and r["kind"] == "measured"]
    assert len(engine) >= 8
    assert all(0.67 <= r["ratio"] <= 1.33 for r in engine), [(r["figure"], r["ratio"]) for r in engine]


def test_the_trainer_is_not_under_planned_on_measured_peaks():
    """prime-rl's measured trainer peaks: the plan may be above (it plans float32 activations), never far below."""
    table = json.loads((ROOT / "bench" / "results" / "published_memory.json").read_text())
    trainer = [r for r in table if r["quantity"] == "trainer"]
    assert trainer and all(0.9 <= r["ratio"] <= 1.5 for r in trainer), [(r["figure"], r["ratio"]) for r in trainer]


def test_two_published_settings_measured_on_the_gpu_are_within_ten_percent_of_the_plan():
    """bench/results/gpu/published_memory: an Unsloth notebook's engine at the real shape on an H100; the run's
    measured peak next to the plan that run.json recorded."""
    for job in ("nb_llama32_3b", "nb_qwen3_4b"):
        run = json.loads((ROOT / "bench" / "results" / "gpu" / "published_memory" / job / "run.json").read_text())
        measured, planned = run["gpu_memory"]["gpu/peak_used_gb"], run["plan"]["total_gb"]
        assert 0.9 <= planned / measured <= 1.1, (job, planned, measured)
        start = (ROOT / "bench" / "results" / "gpu" / "published_memory" / job / "vllm_start.txt").read_text()
        assert "Model loading took" in start and "Available KV cache memory" in start
