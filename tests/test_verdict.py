"""The reproduce verdict as a specification (r1exp.records.verdict), on synthetic metric series.

Noise criterion (GPU runs without the deterministic mode): two runs whose judged metrics (reward, per-reward
means, loss, grad_norm, completion length) behave like two draws of one training are "reproduced within noise";
a shift of the level from step N on, a NaN, a metric logged by one run only, a changed learning rate are "beyond
noise" at the step where they start. Exact criterion (CPU, reproducible=true): every metric equal.
Calibration on real runs (the default CPU run against other seeds and learning rates): README, "Reproducing a run".
"""

from __future__ import annotations

import math
import random

import pytest

from r1exp.records import verdict

STEPS = 30
NOISE = 0.05  # the batch-to-batch standard deviation of the synthetic reward


def run(seed: int, steps: int = STEPS, shift: float = 0.0, shift_from: int | None = None, lr: float = 1e-3,
        at: dict | None = None) -> list[dict]:
    """A GRPO-like run: the reward rises and levels off, each step a new batch (independent noise per seed)."""
    rnd = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        level = 1.0 - 0.7 * math.exp(-step / 6)
        if shift_from is not None and step >= shift_from:
            level += shift
        reward = level + rnd.gauss(0, NOISE)
        rows.append({
            "step": step, "reward": reward, "rewards/format/mean": reward * 0.8 + rnd.gauss(0, 0.02),
            "loss": rnd.gauss(0, 0.05), "grad_norm": abs(rnd.gauss(0.3, 0.1)),
            "completions/mean_length": 9 + rnd.gauss(0, 0.4), "entropy": 1.5 * math.exp(-step / 8) + seed * 0.05,
            "learning_rate": lr, "epoch": round(step * 0.002, 6), "step_time": rnd.uniform(1, 2),
            "sampling/importance_sampling_ratio/max": 1 + abs(rnd.gauss(0, 0.5)),
        })
    for (step, key), value in (at or {}).items():  # {(step, metric): value}
        rows[step - 1][key] = value
    return rows


def saturated(dips: set, dip: float = 1 / 32) -> list[dict]:
    """A format reward at 1.0 (32 completions, all well formed) but for one completion at the steps in `dips`."""
    return [{"step": t, "rewards/format/mean": 1.0 - (dip if t in dips else 0.0), "learning_rate": 1e-3}
            for t in range(1, STEPS + 1)]


def without(rows: list[dict], key: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != key} for r in rows]


def gpu_rerun(rows: list[dict], relative: float = 3e-4) -> list[dict]:
    """Last-bits differences of the kind a GPU rerun shows in its first steps (grad_norm 0.14700 vs 0.14695)."""
    return [{k: (v * (1 + relative) if isinstance(v, float) and k not in ("learning_rate", "epoch") else v)
             for k, v in r.items()} for r in rows]


# (case, saved, new, step_count_note, passed, first step that differs, its metric, why)
NOISE_TABLE = [
    ("identical", run(1), run(1), None, True, None, None, None),
    ("another draw of the same training", run(1), run(2), None, True, None, None, None),
    ("another draw, 3 steps", run(1, steps=3), run(2, steps=3), None, True, None, None, None),
    ("last-bits differences (GPU, 3 steps)", run(1, steps=3), gpu_rerun(run(1, steps=3)), None, True, None, None,
     None),
    ("one outlier batch", run(1), run(2, at={(12, "grad_norm"): 3.0}), None, True, None, None, None),
    ("a timing diagnostic and a tail statistic differ", run(1),
     run(2, at={(5, "step_time"): 99.0, (5, "sampling/importance_sampling_ratio/max"): 40.0}), None, True, None, None,
     None),
    ("entropy is reported, not judged", run(1), run(9), None, True, None, None, None),
    ("a saturated reward dips at other steps", saturated({5, 17}), saturated({10, 11}), None, True, None, None,
     None),
    ("a saturated reward collapses from step 10", saturated({5, 17}), saturated(set(range(10, 31)), dip=0.5), None,
     False, 10, "rewards/format/mean", "beyond noise"),
    ("the reward shifts from step 15", run(1), run(2, shift=0.6, shift_from=15), None, False, 15, "reward",
     "beyond noise"),
    ("the reward falls from step 8", run(1), run(2, shift=-0.6, shift_from=8), None, False, 8, "reward",
     "beyond noise"),
    ("a changed learning rate", run(1), run(1, lr=1e-2), None, False, 1, "learning_rate", "not equal"),
    ("NaN in the new run", run(1), run(1, at={(7, "loss"): float("nan")}), None, False, 7, "loss", "NaN in one run"),
    ("NaN in both runs", run(1, at={(7, "loss"): float("nan")}), run(2, at={(7, "loss"): float("nan")}), None, True,
     None, None, None),
    ("a judged metric logged by one run only", run(1), without(run(2), "grad_norm"), None, False, 1, "grad_norm",
     "logged by one run only"),
    ("fewer steps, explained", run(1), run(2, steps=10), "trainer.max_steps=10 was given", True, None, None, None),
    ("fewer steps, unexplained", run(1), run(2, steps=10), None, False, None, None, None),
]


@pytest.mark.parametrize("case, saved, new, note, passed, step, metric, why", NOISE_TABLE,
                         ids=[row[0] for row in NOISE_TABLE])
def test_noise_criterion(case, saved, new, note, passed, step, metric, why):
    result = verdict.compare(saved, new, "noise", step_count_note=note)
    assert result.passed is passed, verdict.render(result)
    first = result.first
    assert (first.step, first.metric, first.why) == (step, metric, why) if step else first is None
    text = verdict.render(result)
    if passed:
        assert "reproduced within noise" in text
    elif step is not None:
        assert f"differs beyond noise at step {step} in metric {metric}" in text
    else:
        assert f"the saved run logged {len(saved)} steps, the new one {len(new)}" in text


def test_the_noise_verdict_is_symmetric():
    for saved, new in [(run(1), run(2, shift=0.6, shift_from=15)), (run(1), run(2))]:
        there, back = verdict.compare(saved, new, "noise"), verdict.compare(new, saved, "noise")
        assert there.passed == back.passed and (there.first and there.first.step) == (back.first and back.first.step)


@pytest.mark.parametrize("reference, other, scale, expected", [
    ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 1.0, [0, 0, 0, 0, 0]),
    ([1, 1, 1, 1, 1], [1, 1, 9, 1, 1], 2.0, [0, 0, 4, 0, 0]),        # 8 above the band [1, 1], scale 2
    ([0, 0, 0, 0, 0, 0, 0, 0, 10], [10, 0, 0, 0, 0, 0, 0, 0, 0], 1.0, [10, 0, 0, 0, 0, 0, 0, 0, 0]),  # band: t-3..t+3
    ([1, 1], [1, 2], 0.0, [0, math.inf]),                             # no noise: any gap is beyond it
])
def test_band_excess(reference, other, scale, expected):
    assert verdict.band_excess(reference, other, scale) == expected


@pytest.mark.parametrize("series, expected", [
    ([[1.0, 1.0, 1.0]], 0.0),
    ([[0.0, 1.0, 0.0, 1.0]], 1.4826),                      # every step moves by 1: the median estimate
    ([[0.0, 1.0, 0.0], [5.0, 5.0, 5.0]], 1.0),             # pooled changes [1, 1, 0, 0]; resolution 1 (0 to 1)
    ([[0.0, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]], 0.1),   # median change 0, mean 1.2533 x 0.0375; resolution 0.1
    ([[0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.01, 2.01]], 1.2533 * 2.01 / 7),  # mean estimate (2.01 over 7 changes)
    ([[3.0]], 0.0),
])
def test_noise_scale(series, expected):
    assert verdict.noise_scale(*series) == pytest.approx(expected)


def rows(*rewards, **extra):
    return [{"step": i + 1, "reward": r, "loss": 0.1 * i, "step_time": 1.0 + i, **extra} for i, r in enumerate(rewards)]


# (saved, new, atol, step_count_note, passed, first step that differs)
EXACT_TABLE = [
    (rows(0.5, 0.6), rows(0.5, 0.6), 0.0, None, True, None),
    (rows(0.5, 0.6), [{**r, "step_time": 99.0} for r in rows(0.5, 0.6)], 0.0, None, True, None),  # timings ignored
    (rows(0.5, 0.6, **{"gc/full_collections": 1.0, "memory/generation": 2.5}),                   # and the machine's
     rows(0.5, 0.6, **{"gc/full_collections": 0.0, "memory/generation": 2.4}), 0.0, None, True, None),   # counts
    (rows(0.5, 0.6), rows(0.5, 0.6000001), 0.0, None, False, 2),
    (rows(0.5, 0.6), rows(0.5, 0.6000001), 1e-6, None, True, None),
    (rows(0.5, 0.6), rows(0.4, 0.6), 0.0, None, False, 1),
    (rows(0.5, 0.6), rows(0.5), 0.0, None, False, None),                     # fewer steps: not the same run
    (rows(0.5, 0.6), rows(0.5), 0.0, "trainer.max_steps=1 was given", True, None),  # ... unless asked for
    (rows(float("nan")), rows(float("nan")), 0.0, None, True, None),          # nan equals nan here
    (rows(0.5, extra_key=1), rows(0.5), 0.0, None, False, 1),                 # a metric missing
    ([], rows(0.5), 0.0, "the saved run is dead", False, None),               # nothing in common
]


@pytest.mark.parametrize("saved, new, atol, note, passed, first_step", EXACT_TABLE)
def test_exact_criterion(saved, new, atol, note, passed, first_step):
    result = verdict.compare(saved, new, "exact", atol, note)
    assert result.passed is passed and result.identical is passed
    assert (result.first.step if result.first else None) == first_step
    text = verdict.render(result, atol)
    assert ("diverge from step" in text) == (first_step is not None)
    if passed and note:
        assert f"identical at the 1 steps both runs logged (the saved run logged 2, the new one 1: {note})" in text
