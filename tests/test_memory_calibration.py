"""The memory planner against the committed H200 peaks: every run is re-planned with the current code (no GPU, no
model: configs only), so a planner change that breaks the calibration fails here, naming the run.
The table and the sets are bench/results/h200/memory.md (bench/gpu/plan_vs_measured.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))

import plan_vs_measured as pvm  # noqa: E402

# ACT_FACTOR's comment in r1exp/config/plan.py: 1.2 puts every measured (fit) row within 15%.
FIT_BOUND = 0.15
# Held-out PEFT rows (memory.md, "held-out error"): max |error| 12.5%, all under-predictions. The ±10% goal is NOT
# met for session4/q7/runs/hf (-12.5%, 7B peft + hf generate, like the fit's q7_peft_hf at -13.5%); the other PEFT
# rows are within -9%. 15% is the bound the planner's own calibration claims, with ~2.5 points of room.
HELD_OUT_BOUND = 0.15
# Unsloth + vLLM after the engine got the planned length (max_seq_length = the plan's max_model_len, session 4): the
# training part peaks ~8-11 GiB above the plan at every size; a float32 [64 x 257 x 151,936] logits buffer (9.3 GiB)
# would explain it, but the earlier 7B Unsloth run (max_seq_length 2048, fit row q7_unsloth_vllm) did not show it,
# so the planner does not model it yet. strict: a planner that gets these right must move them out of this list.
UNSLOTH_MISS = "Unsloth's training peak after session 4's max_seq_length fix is not modelled (memory.md)"
KNOWN_MISSES = {"session4/final/runs/q05_unsloth", "session4/unsloth/runs/q05_unsloth",
                "session4/unsloth/runs/q15_unsloth"}

ROWS = list(pvm.rows())
FIT = [r for r in ROWS if r.set == "fit"]
HELD_OUT = [r for r in ROWS if r.set == "held-out"]
EXCLUDED = [r for r in ROWS if r.set == "excluded"]


def _ids(rows):
    return [r.run for r in rows]


@pytest.mark.parametrize("row", FIT, ids=_ids(FIT))
def test_fit_row_within_bound(row):
    assert abs(row.error) <= FIT_BOUND, (
        f"{row.run}: planned {row.planned_gb:.2f} GiB vs measured {row.measured_gb:.2f} GiB ({row.error:+.1%}), "
        f"outside ±{FIT_BOUND:.0%}")


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=UNSLOTH_MISS))
                                 if r.run in KNOWN_MISSES else r for r in HELD_OUT], ids=_ids(HELD_OUT))
def test_held_out_row_within_bound(row):
    assert abs(row.error) <= HELD_OUT_BOUND, (
        f"{row.run}: planned {row.planned_gb:.2f} GiB vs measured {row.measured_gb:.2f} GiB ({row.error:+.1%}), "
        f"outside ±{HELD_OUT_BOUND:.0%}")


def test_held_out_has_both_sessions():
    assert HELD_OUT
    assert any(r.run.startswith("session3/") for r in HELD_OUT)
    assert any(r.run.startswith("session4/") for r in HELD_OUT)
    assert len(FIT) >= 4


def test_no_run_silently_dropped():
    with_peak = [p for p in pvm.RESULTS.rglob("run.json")
                 if (json.loads(p.read_text()).get("gpu_memory") or {}).get("gpu/peak_used_gb")]
    assert len(with_peak) == len(FIT) + len(HELD_OUT) + len(EXCLUDED) == len(ROWS)
    assert all(r.reason for r in EXCLUDED) and not any(r.reason for r in FIT + HELD_OUT)
    assert {"unsloth_vllm", "unsloth_vllm_env_vars"} <= {r.run for r in EXCLUDED}


def test_memory_md_is_current():
    committed = pvm.MEMORY_MD.read_text()
    assert pvm.render(ROWS) == committed, (
        "bench/results/h200/memory.md is stale (the planner's numbers moved?): "
        "run `python bench/gpu/plan_vs_measured.py` and review the diff")
