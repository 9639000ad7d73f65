"""The memory planner against the committed H200 peaks: every run is re-planned with the current code (no GPU, no
model: configs only), so a planner change that breaks the calibration fails here, naming the run.
The table and the sets are bench/results/gpu/memory_plan.md (bench/gpu/plan_vs_measured.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "gpu"))

import plan_vs_measured as pvm  # noqa: E402

# ACT_FACTOR's comment in r1exp/plan/memory.py: 1.2 puts every measured (fit) row within 15%.
FIT_BOUND = 0.15
# Held-out rows (memory_plan.md, "held-out error"). PEFT: max |error| 11.7%, all under-predictions; the ±10% goal is
# NOT met for memory_plan/held_out/peft_0.5b_awake (-11.7%, 0.5B with its engine awake and the explicit KV cache); the
# other PEFT rows are within -9%. Unsloth with gradient checkpointing (its own terms, fitted on memory_plan/fit/):
# within ±5% on 3B, 1.5B 4-bit and every later run. 15% is the bound the planner's own calibration claims.
HELD_OUT_BOUND = 0.15
# Unsloth without gradient checkpointing: no fit run had it off; the plan over-predicts by 16% (every layer counted
# as a checkpointed layer is; Unsloth keeps less). strict: a planner that gets it right must move it out of this list.
UNSLOTH_MISS = "Unsloth without gradient checkpointing: over-predicted by 16% (not fitted; memory_plan.md)"
KNOWN_MISSES = {"memory_plan/held_out/unsloth_0.5b_32x512_no_checkpointing"}
# Unsloth rows with gradient checkpointing, fit and held-out: the ±10% goal (logits held: within 2.7%; recomputed:
# within 5%)
UNSLOTH_BOUND = 0.10

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


UNSLOTH_CHECKPOINTED = [r for r in FIT + HELD_OUT if r.loader == "unsloth" and r.grad_ckpt]


@pytest.mark.parametrize("row", UNSLOTH_CHECKPOINTED, ids=_ids(UNSLOTH_CHECKPOINTED))
def test_unsloth_rows_with_gradient_checkpointing_within_ten_percent(row):
    assert abs(row.error) <= UNSLOTH_BOUND, f"{row.run}: {row.error:+.1%}, outside ±{UNSLOTH_BOUND:.0%}"


def test_unsloth_terms_are_judged_on_shapes_they_were_not_fitted_on():
    fit_shapes = {(r.model, r.shape) for r in FIT if r.loader == "unsloth"}
    unseen = [r for r in HELD_OUT if r.loader == "unsloth" and (r.model, r.shape) not in fit_shapes]
    assert len(unseen) >= 3 and any(not r.grad_ckpt for r in unseen)


def test_held_out_has_runs_before_and_after_the_explicit_kv_cache():
    """Held-out runs re-planned with the memory fraction their plan recorded (before the engine's explicit KV cache)
    and runs planned with it, for both loaders."""
    def fraction_era(row):
        plan = json.loads((pvm.RESULTS / row.run / "run.json").read_text()).get("plan") or {}
        return "kv_cache_gb" not in plan

    for loader in ("peft", "unsloth"):
        rows = [r for r in HELD_OUT if r.loader == loader]
        assert any(fraction_era(r) for r in rows) and not all(fraction_era(r) for r in rows), loader
    assert len(FIT) >= 4


def test_no_run_silently_dropped():
    with_peak = [p for p in pvm.RESULTS.rglob("run.json")
                 if (json.loads(p.read_text()).get("gpu_memory") or {}).get("gpu/peak_used_gb")]
    assert len(with_peak) == len(FIT) + len(HELD_OUT) + len(EXCLUDED) == len(ROWS)
    assert all(r.reason for r in EXCLUDED) and not any(r.reason for r in FIT + HELD_OUT)
    assert {"unsloth_compile/no_env_vars", "unsloth_compile/env_vars"} <= {r.run for r in EXCLUDED}


def test_memory_md_is_current():
    committed = pvm.MEMORY_MD.read_text()
    assert pvm.render(ROWS) == committed, (
        "bench/results/gpu/memory_plan.md is stale (the planner's numbers moved?): "
        "run `python bench/gpu/plan_vs_measured.py` and review the diff")
