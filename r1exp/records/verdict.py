"""Is a rerun the same run? Two criteria, chosen by `python -m r1exp.reproduce` (see its docstring):

**exact** (CPU; GPU runs with `reproducible=true`): every logged metric of every common step is equal (`atol`
may allow a fixed absolute difference). Timings are never compared.

**noise** (a GPU run without the deterministic mode): GPU kernels are not bit-exact, the difference in the last
bits changes a sampled token sooner or later, and from then on the two runs see different completions: their
per-step metrics differ as two draws of the same training differ. The question is then whether the new run behaves
like another draw of the saved one. The criterion, per metric:

- noise scale `s`: the standard deviation of the step-to-step change x(t) - x(t-1) over both runs, the larger of
  two estimates: 1.4826 x the median |change| (ignores the few steps where the run changes fast) and 1.2533 x the
  mean |change| (not 0 for a metric that mostly stays put: a reward saturated at 1.0, or 0 with rare spikes), and
  never less than the metric's resolution (the smallest gap between two values it took: 1/32 for the mean of 32
  rewards of 0 or 1), so a few completions of a saturated reward are never beyond noise.
- at step t, the band of each run is [min, max] of its own values over steps t-3 .. t+3 (HALF_WINDOW): where that
  run was around then, which absorbs the batch noise and a shift in time of a few steps (two draws learn the format
  a step or two apart).
- the runs differ beyond noise at step t in metric m when one run lies outside the other's band by more than
  4 x s (MARGIN) at this step and the next (PERSIST steps in a row: one batch can be an outlier; with a single
  common step, one step is enough). The verdict names the first such step and metric.

Judged metrics (JUDGED): the training outcome, per step: `reward`, each `rewards/<name>/mean`, `loss`,
`grad_norm`, `completions/mean_length`. Exact in both criteria (EXACT): `learning_rate` and `epoch`, functions of
the config and the step only (a changed learning rate shows at step 1). Reported but not judged: everything else:
the policy's state (`entropy`, `kl`) drifts apart between two draws, so its step-to-step change is no measure of
run-to-run noise (two seeds of the default run: entropy 7 x its step-to-step change apart for several steps; the
judged metrics at most 5.2 x, at one step); tail statistics (`.../max`, `.../min`, clip ratios) and cumulative counters
(`num_tokens`) are noise or follow from the judged ones. A judged metric that is NaN in one run and not in the
other, or logged by one run only, differs beyond noise. Calibration (docs/reproducing.md): the default
CPU run against runs that differ only in their seed (a harsher stand-in for GPU noise: new data order and other
samples from step 1) stayed within noise over 3 to 50 steps; against a 10x learning rate it did not, also with the
learning_rate column left out; synthetic pairs in tests/test_verdict.py.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

# Metrics that measure the machine, not the training: never compared. Besides timings: the garbage collector's
# collections per step (`gc/`, r1exp.observe.gc_pauses: when one strikes follows the process's allocations, not the training;
# the default CPU run logged 1 at step 1, its rerun 0) and the device's memory per phase (`memory/`).
VOLATILE = re.compile(r"(time|runtime|seconds|per_second|_s$|^profiling/|^gc/|^memory/)")
EXACT = re.compile(r"^(learning_rate|epoch)$")
JUDGED = re.compile(r"^(reward|rewards/[^/]+/mean|loss|grad_norm|completions/mean_length)$")
HALF_WINDOW = 3
MARGIN = 4.0
PERSIST = 2
MAD_TO_SD = 1.4826   # median |x| of a normal variable x 1.4826 = its SD
MEAN_TO_SD = 1.2533  # mean |x| x 1.2533 = SD (sqrt(pi / 2))


@dataclass
class Difference:
    step: int
    metric: str
    old: object
    new: object
    why: str                     # "not equal", "beyond noise", "NaN in one run", "logged by one run only"
    excess: float | None = None  # noise criterion: how far outside the other run's band, in noise scales

    def as_dict(self) -> dict:
        return {"step": self.step, "metric": self.metric, "old": self.old, "new": self.new, "why": self.why,
                "excess": self.excess}


@dataclass
class Comparison:
    criterion: str               # "exact" | "noise"
    steps_old: int
    steps_new: int
    compared: int = 0            # common steps
    metrics: list = field(default_factory=list)
    judged: list = field(default_factory=list)
    differences: list = field(default_factory=list)   # [Difference], step order
    largest: tuple | None = None  # exact: (metric, step, |difference|); noise: (metric, step, excess in scales)
    step_count_note: str | None = None  # why a different number of steps is expected, or None

    @property
    def first(self) -> Difference | None:
        return self.differences[0] if self.differences else None

    @property
    def steps_differing(self) -> int:
        return len({d.step for d in self.differences})

    @property
    def same_steps(self) -> bool:
        return self.steps_old == self.steps_new

    @property
    def passed(self) -> bool:
        """No difference at the common steps, and the same number of steps unless a difference was expected."""
        return self.compared > 0 and not self.differences and (self.same_steps or self.step_count_note is not None)

    @property
    def identical(self) -> bool:
        return self.criterion == "exact" and self.passed

    def as_dict(self) -> dict:
        return {"criterion": self.criterion, "passed": self.passed, "identical": self.identical,
                "steps_old": self.steps_old, "steps_new": self.steps_new, "steps_compared": self.compared,
                "metrics_compared": self.metrics, "metrics_judged": self.judged,
                "first_difference": self.first.as_dict() if self.first else None,
                "steps_differing": self.steps_differing, "largest": self.largest,
                "step_count_note": self.step_count_note}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _nan(v) -> bool:
    return _number(v) and math.isnan(v)


def _equal(a, b, atol: float = 0.0) -> bool:
    if _number(a) and _number(b):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= atol
    return a == b


def _close(a, b) -> bool:
    """EXACT metrics under the noise criterion: equal up to the float formatting of a log line."""
    if _number(a) and _number(b) and not (math.isnan(a) or math.isnan(b)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return _equal(a, b)


def _common(old_rows: list[dict], new_rows: list[dict]) -> tuple[list[int], dict, dict]:
    old = {int(r["step"]): r for r in old_rows}
    new = {int(r["step"]): r for r in new_rows}
    return sorted(set(old) & set(new)), old, new


def compare(old_rows: list[dict], new_rows: list[dict], criterion: str = "exact", atol: float = 0.0,
            step_count_note: str | None = None) -> Comparison:
    """old_rows, new_rows: per-step metric rows (with "step"), as tracking.step_rows gives them."""
    if criterion not in ("exact", "noise"):
        raise ValueError(criterion)
    steps, old, new = _common(old_rows, new_rows)
    result = Comparison(criterion, len(old), len(new), len(steps), step_count_note=step_count_note)
    keys = sorted({k for s in steps for k in (*old[s], *new[s]) if k != "step" and not VOLATILE.search(k)})
    result.metrics = keys
    if criterion == "exact":
        _compare_exact(result, steps, old, new, keys, atol)
    else:
        _compare_noise(result, steps, old, new, keys)
    result.differences.sort(key=lambda d: (d.step, d.metric))
    return result


def _compare_exact(result, steps, old, new, keys, atol) -> None:
    for s in steps:
        for k in keys:
            a, b = old[s].get(k), new[s].get(k)
            if not _equal(a, b, atol):
                result.differences.append(Difference(s, k, a, b, "not equal"))
                gap = abs(a - b) if _number(a) and _number(b) else math.inf
                if result.largest is None or gap > result.largest[2]:
                    result.largest = (k, s, gap)


def _compare_noise(result, steps, old, new, keys) -> None:
    result.judged = [k for k in keys if JUDGED.match(k)]
    for k in keys:
        if EXACT.match(k):
            for s in steps:
                if not _close(old[s].get(k), new[s].get(k)):
                    result.differences.append(Difference(s, k, old[s].get(k), new[s].get(k), "not equal"))
                    break
    for k in result.judged:
        a, b = [old[s].get(k) for s in steps], [new[s].get(k) for s in steps]
        found = judge(k, steps, a, b)
        if found is not None:
            result.differences.append(found)
        for s, _, _, e in excess_series(steps, a, b):
            if result.largest is None or e > result.largest[2]:
                result.largest = (k, s, e)


def noise_scale(*series: list[float]) -> float:
    """The standard deviation of the step-to-step change, pooled over the series, estimated twice: 1.4826 x the
    median |change| (robust to a few fast steps) and 1.2533 x the mean |change| (not 0 for a metric that mostly
    stays put, e.g. a format reward saturated at 1.0, or is mostly 0 with spikes); the larger of the two, and at
    least the metric's resolution."""
    changes = [abs(x[i] - x[i - 1]) for x in series for i in range(1, len(x))]
    if not changes:
        return 0.0
    return max(MAD_TO_SD * statistics.median(changes), MEAN_TO_SD * statistics.fmean(changes), resolution(*series))


def resolution(*series: list[float]) -> float:
    """The smallest gap between two values the metric took (1/32 for the mean of 32 rewards of 0 or 1; next to
    nothing for a continuous metric); 0 for a metric that took one value only."""
    values = sorted({v for x in series for v in x})
    return min((b - a for a, b in zip(values, values[1:])), default=0.0)


def band_excess(reference: list[float], other: list[float], scale: float, half_window: int = HALF_WINDOW) -> list:
    """Per step: how far `other` lies outside reference's [min, max] over the steps t-h .. t+h, in noise scales
    (0 inside; inf outside when the scale is 0)."""
    out = []
    for t, value in enumerate(other):
        window = reference[max(0, t - half_window):t + half_window + 1]
        gap = max(0.0, value - max(window), min(window) - value)
        out.append(gap / scale if scale > 0 else (math.inf if gap > 0 else 0.0))
    return out


def excess_series(steps: list[int], a: list, b: list) -> list[tuple]:
    """(step, a, b, excess) at the steps where both values are numbers (not NaN); excess = how far either run lies
    outside the other's band, in noise scales (symmetric: comparing b with a gives the same)."""
    pairs = [(s, x, y) for s, x, y in zip(steps, a, b) if _number(x) and _number(y) and not _nan(x) and not _nan(y)]
    if not pairs:
        return []
    steps_, a_, b_ = (list(t) for t in zip(*pairs))
    scale = noise_scale(a_, b_)
    excess = [max(e1, e2) for e1, e2 in zip(band_excess(a_, b_, scale), band_excess(b_, a_, scale))]
    return list(zip(steps_, a_, b_, excess))


def judge(metric: str, steps: list[int], a: list, b: list) -> Difference | None:
    """The first step at which `metric` differs beyond noise between the runs (a: saved, b: new), or None."""
    for s, x, y in zip(steps, a, b):
        if (x is None) != (y is None):
            return Difference(s, metric, x, y, "logged by one run only")
        if _nan(x) != _nan(y):
            return Difference(s, metric, x, y, "NaN in one run")
    series = excess_series(steps, a, b)
    persist = min(PERSIST, len(series))
    for i in range(len(series) - persist + 1):
        if all(e > MARGIN for *_, e in series[i:i + persist]):
            s, x, y, e = series[i]
            return Difference(s, metric, x, y, "beyond noise", round(e, 2))
    return None


def render(c: Comparison, atol: float = 0.0) -> str:
    if c.compared == 0:
        return (f"metrics: no step in common (the saved run logged {c.steps_old} steps, the new one {c.steps_new}): "
                f"nothing to compare")
    if c.same_steps:
        where = f"every one of {c.compared} steps"
    elif c.step_count_note:
        where = (f"the {c.compared} steps both runs logged (the saved run logged {c.steps_old}, the new one "
                 f"{c.steps_new}: {c.step_count_note})")
    else:
        where = f"the {c.compared} steps both runs logged"
    lines = [] if c.same_steps or c.step_count_note else [
        f"metrics: the saved run logged {c.steps_old} steps, the new one {c.steps_new}"]
    if c.criterion == "exact":
        lines += _render_exact(c, atol, where)
    else:
        lines += _render_noise(c, where)
    return "\n".join(lines)


def _render_exact(c: Comparison, atol: float, where: str) -> list[str]:
    what = "identical" if atol == 0 else f"equal within {atol:g}"
    if not c.differences:
        return [f"metrics: {what} at {where} ({len(c.metrics)} metrics each; timings not compared)"]
    first = c.first
    at_first = [d for d in c.differences if d.step == first.step]
    lines = [f"metrics diverge from step {first.step} ({c.steps_differing} of {c.compared} compared steps differ):"]
    lines += [f"  {d.metric}: {d.old!r} (saved) vs {d.new!r} (new)" for d in at_first[:8]]
    if len(at_first) > 8:
        lines.append(f"  ... and {len(at_first) - 8} more metrics")
    key, step, gap = c.largest
    lines.append(f"  largest difference: {key} at step {step}: {gap:.3g}")
    return lines


def _render_noise(c: Comparison, where: str) -> list[str]:
    judged = ", ".join(c.judged) or "none"
    if not c.differences:
        closest = (f"; closest: {c.largest[0]} at step {c.largest[1]}, {c.largest[2]:.2g} noise scales outside the "
                   f"other run's band (limit {MARGIN:g})" if c.largest and c.largest[2] > 0 else "")
        verdict = "reproduced within noise" if c.passed else "within noise"
        return [f"{verdict} at {where} (judged: {judged}; learning_rate and epoch exact){closest}"]
    first = c.first
    if first.why == "beyond noise":
        detail = (f"{first.excess:g} noise scales outside the other run's band (limit {MARGIN:g}, {PERSIST} steps in "
                  f"a row)")
    elif first.why == "not equal":
        detail = "a function of the config and the step, it must be equal"
    else:
        detail = first.why
    lines = [f"differs beyond noise at step {first.step} in metric {first.metric}: {first.old!r} (saved) vs "
             f"{first.new!r} (new); {detail}"]
    others = sorted({d.metric for d in c.differences} - {first.metric})
    if others:
        lines.append(f"  also beyond noise: {', '.join(others)}")
    return lines
