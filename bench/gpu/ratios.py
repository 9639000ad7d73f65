"""Issue 13's ratios, computed from each H200 session's committed side-by-side calls (bench/variants.py folders).

    python bench/gpu/ratios.py            # writes bench/results/h200/<session>/ratios.md for every session, prints them

Every ratio is declared once in SESSIONS (which session, call, runs, the goal); the README tables and
tests/test_gpu_ratios.py read the same computation, so a re-measured session that misses a goal shows here and
fails there. Runs of one call ran back to back on one machine; a ratio never mixes calls except through a floor
that ran in the same call as the runs it divides.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "h200"


@dataclass(frozen=True)
class Ratio:
    name: str                    # what is compared, as the README says it
    call: str                    # the folder under the session (one device call)
    kind: str                    # step_over_floor | step_over_step | peak_over_peak | start_over_start | first_step
                                 # | text_cost
    runs: tuple[str, ...]        # the runs compared (their labels in variants.json)
    goal: float                  # upper bound (ratios, seconds) or lower bound (speed-ups)
    at_least: bool = False       # True: the goal is a lower bound
    against: tuple[str, ...] = ()   # *_over_*: the denominators, one per run, one for all, or several for one run
    part: str = "process_to_first_step_s"   # start_over_start: the run.json `startup` figure compared


SESSION7 = (
    Ratio("r1exp step / floor, 1.5B 32 x 512, PEFT (median step)", "s7b", "step_over_floor", ("q15_peft",), 1.3),
    Ratio("r1exp step / floor, 1.5B 32 x 512, Unsloth (median step; floor: TRL's engine alone)", "s7b",
          "step_over_floor", ("q15_unsloth",), 1.3),
    Ratio("engine=hf step / engine=vllm step, 7B, 16 completions x 512 tokens", "s7b", "step_over_step",
          ("q7_16x512_hf",), 5.0, at_least=True, against=("q7_16x512_vllm",)),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (two runs; the machine had run Unsloth before)", "s7c",
          "first_step", ("q05_peft_1", "q05_peft_2"), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (two runs, interleaved with PEFT's)", "s7c", "first_step",
          ("q05_unsloth_1", "q05_unsloth_2"), 60.0),
    # not an issue-13 goal: Unsloth, sharing its weights with its engine, should be no slower than TRL colocate
    Ratio("Unsloth step / PEFT step, 0.5B 64 x 256 (median; runs 1 and 2, interleaved)", "s7c", "step_over_step",
          ("q05_unsloth_1", "q05_unsloth_2"), 1.0, against=("q05_peft_1", "q05_peft_2")),
    Ratio("Unsloth step / PEFT step, 1.5B 32 x 512 (median)", "s7b", "step_over_step", ("q15_unsloth",),
          1.0, against=("q15_peft",)),
)

# Session 8: Unsloth's loss recomputes its logits in the backward (loader.recompute_logits, the default) instead of
# holding them; `*_held` runs are the same shape with loader.recompute_logits=false (sessions 4-7's behaviour).
SESSION8 = (
    Ratio("Unsloth peak / TRL colocate peak, 7B 64 x 256 (TRL with sleep mode, its default)", "s8a", "peak_over_peak",
          ("q7_unsloth",), 0.5, against=("q7_peft",)),
    Ratio("Unsloth peak / TRL colocate peak, 7B 64 x 256 (TRL awake, engine.sleep_mode=false)", "s8a",
          "peak_over_peak", ("q7_unsloth",), 0.5, against=("q7_peft_awake",)),
    # not issue-13 goals: what recomputing the loss's logits changes, same shape back to back
    Ratio("Unsloth peak, logits recomputed / held, 7B 64 x 256", "s8a", "peak_over_peak", ("q7_unsloth",), 0.9,
          against=("q7_unsloth_held",)),
    Ratio("Unsloth peak, logits recomputed / held, 0.5B 64 x 256", "s8b", "peak_over_peak",
          ("q05_unsloth",), 0.6, against=("q05_unsloth_held",)),
    Ratio("Unsloth step, logits recomputed / held, 7B 64 x 256 (median; no slower: within 5%)", "s8a",
          "step_over_step", ("q7_unsloth",), 1.05, against=("q7_unsloth_held",)),
    Ratio("Unsloth step, logits recomputed / held, 0.5B 64 x 256 (median; no slower: within 5%)", "s8b",
          "step_over_step", ("q05_unsloth",), 1.05, against=("q05_unsloth_held",)),
    Ratio("Unsloth step, logits recomputed / held, 0.5B 64 x 256, second pair (median)", "s8c", "step_over_step",
          ("q05_unsloth_2",), 1.05, against=("q05_unsloth_held_2",)),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s", "s8b", "first_step", ("q05_peft",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the machine's first Unsloth 0.5B run; a later one)", "s8b",
          "first_step", ("q05_unsloth", "q05_unsloth_held"), 60.0),
)

# Session 9: the engine's KV cache is sized explicitly (engine.gpu_memory_utilization=auto: one generation batch,
# vLLM kv_cache_memory_bytes) for TRL's engine and Unsloth's alike; `q7_unsloth_frac` is session 8's fraction (0.15).
# The machine's packages had bytecode (bench/gpu/side_by_side.sh compiles them once per machine).
SESSION9 = (
    Ratio("Unsloth peak / TRL colocate peak, 7B 64 x 256 (TRL with sleep mode, its default)", "s9a", "peak_over_peak",
          ("q7_unsloth",), 0.5, against=("q7_peft",)),
    Ratio("Unsloth peak / TRL colocate peak, 7B 64 x 256 (TRL awake, engine.sleep_mode=false)", "s9a",
          "peak_over_peak", ("q7_unsloth",), 0.5, against=("q7_peft_awake",)),
    Ratio("r1exp step / floor, 7B 64 x 256, PEFT (median step)", "s9c", "step_over_floor", ("q7_peft_2",), 1.3),
    Ratio("r1exp step / floor, 7B 64 x 256, Unsloth (median step; floor: TRL's engine alone)", "s9c",
          "step_over_floor", ("q7_unsloth_2",), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, PEFT (median step; two runs interleaved with Unsloth's)", "s9b",
          "step_over_floor", ("q05_peft_1", "q05_peft_2"), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, Unsloth (median step; two runs interleaved with PEFT's)", "s9b",
          "step_over_floor", ("q05_unsloth_1", "q05_unsloth_2"), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, PEFT (median step; a later call)", "s9e", "step_over_floor",
          ("q05_peft_4",), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, Unsloth (median step; a later call)", "s9e", "step_over_floor",
          ("q05_unsloth_4",), 1.3),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (two runs)", "s9b", "first_step", ("q05_peft_1", "q05_peft_2"),
          60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the machine's first Unsloth 0.5B run; a later one)", "s9b",
          "first_step", ("q05_unsloth_1", "q05_unsloth_2"), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (a later call)", "s9d", "first_step", ("q05_unsloth_3",),
          60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the last call)", "s9e", "first_step", ("q05_unsloth_4",),
          60.0),
    # not issue-13 goals: what the explicit KV cache changes, same shape back to back; Unsloth vs TRL's step
    Ratio("Unsloth peak, explicit KV cache / session 8's fraction (0.15), 7B 64 x 256", "s9a", "peak_over_peak",
          ("q7_unsloth",), 0.9, against=("q7_unsloth_frac",)),
    Ratio("Unsloth step, explicit KV cache / fraction, 7B 64 x 256 (median; no slower: within 5%)", "s9a",
          "step_over_step", ("q7_unsloth",), 1.05, against=("q7_unsloth_frac",)),
    Ratio("Unsloth step / PEFT step, 7B 64 x 256 (median)", "s9c", "step_over_step", ("q7_unsloth_2",), 1.0,
          against=("q7_peft_2",)),
    Ratio("Unsloth step / PEFT step, 0.5B 64 x 256 (median; runs 1 and 2, interleaved)", "s9b", "step_over_step",
          ("q05_unsloth_1", "q05_unsloth_2"), 1.0, against=("q05_peft_1", "q05_peft_2")),
)

# Session 10: loader=peft takes pi_old of TRL's importance-sampling correction from the loss's own forward when the run
# is on-policy (loader.reuse_training_logps, the default); `*_pass` runs keep TRL's extra log-prob pass. s10b's floor
# is not used: its vLLM-alone generation (2.52 s) was slower than the generation inside that call's runs (1.44-2.07 s).
SESSION10 = (
    Ratio("r1exp step / floor, 7B 64 x 256, PEFT (median step; pi_old from the loss's forward, the default; runs "
          "before and after TRL's pass)", "s10a", "step_over_floor", ("q7_peft", "q7_peft_2"), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, PEFT (median step; two runs interleaved with TRL's pass, the floor right "
          "after the first)", "s10c", "step_over_floor", ("q05_peft_2", "q05_peft_3"), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, Unsloth (median step; floor: TRL's engine alone)", "s10c",
          "step_over_floor", ("q05_unsloth_2",), 1.3),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (the first call, after Unsloth's first run)", "s10b",
          "first_step", ("q05_peft",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (the later call)", "s10c", "first_step",
          ("q05_peft_2", "q05_peft_3"), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first run on a fresh machine)", "s10b", "first_step",
          ("q05_unsloth",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the later call)", "s10c", "first_step",
          ("q05_unsloth_2",), 60.0),
    # not issue-13 goals: what the extra log-prob pass costs, same shape back to back
    Ratio("PEFT step, pi_old from the loss's forward / TRL's extra pass, 7B 64 x 256 (median; runs before and after)",
          "s10a", "step_over_step", ("q7_peft", "q7_peft_2"), 0.95, against=("q7_peft_pass",)),
    Ratio("PEFT step, pi_old from the loss's forward / TRL's extra pass, 0.5B 64 x 256 (median; back to back)", "s10b",
          "step_over_step", ("q05_peft",), 1.0, against=("q05_peft_pass",)),
    Ratio("PEFT step, pi_old from the loss's forward / TRL's extra pass, 0.5B 64 x 256 (median; two interleaved "
          "pairs)", "s10c", "step_over_step", ("q05_peft_2", "q05_peft_3"), 1.0,
          against=("q05_peft_pass_2", "q05_peft_pass_3")),
    # not an issue-13 goal: Unsloth still runs its own no-grad log-prob pass (0.60 s at 7B); a fresh machine
    Ratio("Unsloth step / PEFT step, 7B 64 x 256 (median; back to back, a later machine)", "s10d", "step_over_step",
          ("q7_unsloth",), 1.0, against=("q7_peft_3",)),
)

# Session 11: loader=unsloth takes pi_old from the loss's own forward when the run is on-policy
# (loader.reuse_training_logps, the default since session 11); `*_pass` runs keep Unsloth's no-grad log-prob pass.
# In s11a the reuse was not in force (the check read the wrapper Unsloth puts around the method): its three Unsloth
# runs all ran the pass and count here only for start-up. Every Unsloth run of s11a-s11c trained with Unsloth's own
# GRPOConfig defaults (truncated completions masked out: loss and gradient norm 0 at these random-weight shapes; r1exp
# pins TRL's defaults since, r1exp/grpo/args.py); the forward, backward and optimizer ran all the same.
SESSION11 = (
    Ratio("r1exp step / floor, 0.5B 64 x 256, Unsloth (median step; pi_old from the loss's forward, runs before and "
          "after its pass; floor: TRL's engine alone)", "s11c", "step_over_floor", ("q05_unsloth", "q05_unsloth_2"),
          1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, PEFT (median step; the floor right after it)", "s11c",
          "step_over_floor", ("q05_peft",), 1.3),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first run on a fresh machine)", "s11a", "first_step",
          ("q05_unsloth",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (later runs of that machine)", "s11a", "first_step",
          ("q05_unsloth_pass", "q05_unsloth_2"), 60.0),
    # not issue-13 goals: what Unsloth's pass costs, same shape back to back; Unsloth vs TRL's step now that neither
    # runs a pass
    Ratio("Unsloth step, pi_old from the loss's forward / Unsloth's pass, 7B 64 x 256 (median; back to back)", "s11b",
          "step_over_step", ("q7_unsloth",), 0.95, against=("q7_unsloth_pass",)),
    Ratio("Unsloth step, pi_old from the loss's forward / Unsloth's pass, 0.5B 64 x 256 (median; runs before and "
          "after)", "s11c", "step_over_step", ("q05_unsloth", "q05_unsloth_2"), 1.0, against=("q05_unsloth_pass",)),
    Ratio("Unsloth peak, pi_old from the loss's forward / Unsloth's pass, 7B 64 x 256 (no higher)", "s11b",
          "peak_over_peak", ("q7_unsloth",), 1.0, against=("q7_unsloth_pass",)),
    Ratio("Unsloth step / PEFT step, 7B 64 x 256 (median; back to back)", "s11b", "step_over_step", ("q7_unsloth",),
          1.0, against=("q7_peft",)),
)

SESSION12 = (
    Ratio("r1exp step / floor, 0.5B 64 x 256, PEFT (median step; the floor after the second run)", "s12a",
          "step_over_floor", ("q05_peft", "q05_peft_2"), 1.3),
    Ratio("r1exp step / floor, 0.5B 64 x 256, Unsloth (median step; Unsloth's GRPOConfig as it came, see README; "
          "floor: TRL's engine alone)", "s12a", "step_over_floor", ("q05_unsloth",), 1.3),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first run on a fresh machine)", "s12c", "first_step",
          ("q05_unsloth",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (after a first run on a fresh machine)", "s12c", "first_step",
          ("q05_peft",), 60.0),
    # not issue-13 goals: what vLLM's text cost (engine.detokenize), alone and in runs; Unsloth against TRL's step
    Ratio("vLLM alone without / with the text, 0.5B 64 x 256 (one engine, interleaved; median of 3)", "s12a",
          "text_cost", ("q05_peft_2",), 0.9),
    Ratio("PEFT step without / with vLLM's text, 0.5B 64 x 256 (median; s11 settings run between)", "s12a",
          "step_over_step", ("q05_peft", "q05_peft_2"), 0.9, against=("q05_peft_s11",)),
    Ratio("PEFT step without / with vLLM's text, 0.5B 64 x 256 (median; back to back)", "s12b", "step_over_step",
          ("q05_peft_unfrozen",), 0.9, against=("q05_peft_text",)),
    Ratio("Unsloth step without / with vLLM's text, 0.5B 64 x 256 (median; back to back)", "s12b", "step_over_step",
          ("q05_unsloth",), 0.9, against=("q05_unsloth_s11",)),
    Ratio("Unsloth step / PEFT step, 7B 64 x 256 (median; back to back)", "s12b", "step_over_step", ("q7_unsloth",),
          1.0, against=("q7_peft",)),
    Ratio("Unsloth step / PEFT step, 0.5B 64 x 256 (median; Unsloth training with TRL's defaults, same machine)",
          "s12c", "step_over_step", ("q05_unsloth",), 1.0, against=("q05_peft",)),
)

SESSION13 = (
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first run on a fresh machine, hardware.kernel_cache "
          "holding the kernels another H200 compiled)", "s13c", "first_step", ("q05_unsloth_carried",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (a fresh machine, the carried kernel cache)", "s13c",
          "first_step", ("q05_peft_carried",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (every kernel cache empty, on a machine that had run it)",
          "s13b", "first_step", ("q05_unsloth_cold",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the fresh machine's later runs, an empty kernel cache / "
          "the default caches, empty there)", "s13c", "first_step", ("q05_unsloth_cold", "q05_unsloth_2"), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (later runs of a fresh machine)", "s13a", "first_step",
          ("q05_unsloth", "q05_unsloth_2"), 60.0),
    # not issue-13 goals: what a filled kernel cache saves on a fresh machine's start; Unsloth against TRL's step
    Ratio("start to first step, kernel cache another machine filled / empty kernel caches, 0.5B Unsloth (one fresh "
          "machine)", "s13c", "start_over_start", ("q05_unsloth_carried",), 0.8,
          against=("q05_unsloth_cold", "q05_unsloth_2")),
    Ratio("Unsloth step / PEFT step, 0.5B 64 x 256 (median; interleaved, twice each)", "s13c", "step_over_step",
          ("q05_unsloth_carried", "q05_unsloth_2"), 1.0, against=("q05_peft_carried", "q05_peft_2")),
)

# Session 14: Unsloth generates TRL's GRPO trainer alone at import (loader.trl_trainers=grpo, the default since this
# session; `*_all` runs and s14a's first run: every TRL trainer, Unsloth's own import).
SESSION14 = (
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first run on a fresh machine, hardware.kernel_cache "
          "holding the kernels another H200 compiled; the defaults)", "s14c", "first_step", ("q05_unsloth_carried",),
          60.0),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (a fresh machine, the carried kernel cache)", "s14c",
          "first_step", ("q05_peft_carried",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first run on a fresh machine, every kernel cache "
          "empty, trl_trainers=all)", "s14a", "first_step", ("q05_unsloth_first",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, PEFT, s (a fresh machine's second run, PEFT's kernels not yet "
          "compiled)", "s14a", "first_step", ("q05_peft_first",), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the first machine's later runs: trl_trainers=all, the "
          "same with the libraries evicted, all / grpo)", "s14b", "first_step",
          ("q05_unsloth_warm", "q05_unsloth_evicted", "q05_unsloth_all", "q05_unsloth_grpo"), 60.0),
    Ratio("start to first step, 0.5B 64 x 256, Unsloth, s (the second machine's later runs: trl_trainers=all / grpo)",
          "s14c", "first_step", ("q05_unsloth_all", "q05_unsloth_2"), 60.0),
    # not issue-13 goals: what generating the GRPO trainer alone saves, what a cold page cache costs, Unsloth's step
    Ratio("imports, trl_trainers=grpo / all, 0.5B Unsloth (back to back, each machine)", "s14b", "start_over_start",
          ("q05_unsloth_grpo",), 0.9, against=("q05_unsloth_all",), part="imports_s"),
    Ratio("imports, trl_trainers=grpo / all, 0.5B Unsloth (the second machine, interleaved)", "s14c",
          "start_over_start", ("q05_unsloth_2",), 0.9, against=("q05_unsloth_all",), part="imports_s"),
    Ratio("start to first step, the packages' native libraries evicted from the page cache / in it, 0.5B Unsloth "
          "(back to back)", "s14b", "start_over_start", ("q05_unsloth_evicted",), 1.05, against=("q05_unsloth_warm",)),
    Ratio("Unsloth step / PEFT step, 0.5B 64 x 256 (median; interleaved, twice each)", "s14c", "step_over_step",
          ("q05_unsloth_carried", "q05_unsloth_2"), 1.0, against=("q05_peft_carried", "q05_peft_2")),
)

SESSIONS = {"session7": SESSION7, "session8": SESSION8, "session9": SESSION9, "session10": SESSION10,
            "session11": SESSION11, "session12": SESSION12, "session13": SESSION13, "session14": SESSION14}


@dataclass(frozen=True)
class Measured:
    ratio: Ratio
    values: tuple[float, ...] | None    # one per run in ratio.runs; None: not measured (why in `missing`)
    detail: str
    missing: str = ""

    @property
    def met(self) -> bool | None:
        if self.values is None:
            return None
        return all(v >= self.ratio.goal if self.ratio.at_least else v <= self.ratio.goal for v in self.values)


def load(session: Path, call: str) -> dict | None:
    path = session / call / "variants.json"
    return json.loads(path.read_text()) if path.exists() else None


def median_step(run: dict) -> float | None:
    """The median step after the first, from the run's own metrics (variants.json's median_step_s)."""
    return run.get("median_step_s") if run.get("exit_code") == 0 else None


def first_step(run: dict) -> float | None:
    return (run.get("startup") or {}).get("process_to_first_step_s") if run.get("exit_code") == 0 else None


def peak(run: dict) -> float | None:
    """The device's peak memory (GiB, run.json gpu_memory) of a run that finished."""
    return (run.get("gpu_memory") or {}).get("gpu/peak_used_gb") if run.get("exit_code") == 0 else None


def startup_part(part: str, run: dict) -> float | None:
    """One figure of a finished run's start-up (run.json `startup`)."""
    return (run.get("startup") or {}).get(part) if run.get("exit_code") == 0 else None


OVER = {"step_over_step": (median_step, "s"), "peak_over_peak": (peak, "GiB"), "start_over_start": (startup_part, "s")}


def measure(ratio: Ratio, session: Path) -> Measured:
    result = load(session, ratio.call)
    if result is None:
        return Measured(ratio, None, "", f"{ratio.call}/variants.json is not committed")
    runs = result["runs"]
    absent = [label for label in (*ratio.runs, *ratio.against) if "exit_code" not in runs.get(label, {})]
    if absent:
        return Measured(ratio, None, "", f"not run in {ratio.call}: {', '.join(absent)}")
    if ratio.kind == "step_over_floor":
        floor = (result.get("floor") or {}).get("step_floor_s")
        steps = [median_step(runs[label]) for label in ratio.runs]
        if not floor or None in steps:
            return Measured(ratio, None, "", (result.get("floor") or {}).get("error", "a run failed or no floor"))
        f = result["floor"]
        detail = (f"step {', '.join(f'{s:.3f}' for s in steps)} s; floor {floor:.3f} s = vLLM alone "
                  f"{f['generation']['seconds']:.3f} s ({f['generation']['tokens']} tokens) + training alone "
                  f"{f['train']['seconds']:.3f} s")
        return Measured(ratio, tuple(s / floor for s in steps), detail)
    if ratio.kind in OVER:
        value, unit = OVER[ratio.kind]
        value = functools.partial(value, ratio.part) if ratio.kind == "start_over_start" else value
        bases = [value(runs[label]) for label in ratio.against]
        tops = [value(runs[label]) for label in ratio.runs]
        if None in bases or None in tops:
            return Measured(ratio, None, "", "a run failed")
        bases = bases * len(tops) if len(bases) == 1 else bases    # one denominator for every run
        tops = tops * len(bases) if len(tops) == 1 else tops       # one run against each denominator
        detail = ", ".join(f"{t:.2f} / {b:.2f} {unit}" for t, b in zip(tops, bases))
        return Measured(ratio, tuple(t / b for t, b in zip(tops, bases)), detail)
    if ratio.kind == "first_step":
        seconds = [first_step(runs[label]) for label in ratio.runs]
        if None in seconds:
            return Measured(ratio, None, "", "a run failed")
        return Measured(ratio, tuple(seconds), "run.json startup.process_to_first_step_s")
    if ratio.kind == "text_cost":
        # the floor of the run's config: vLLM alone with the run's sampling settings and with vLLM's text the other
        # way round, in one engine, interleaved (bench/gpu_floor.py `detokenize`)
        times = ((result.get("floor") or {}).get("generation") or {}).get("detokenize")
        if not times:
            return Measured(ratio, None, "", "the floor has no detokenize measurement")
        without, with_text = times["false"]["seconds"], times["true"]["seconds"]
        return Measured(ratio, (without / with_text,), f"{without:.3f} / {with_text:.3f} s")
    raise ValueError(f"unknown kind {ratio.kind!r}")


def render(name: str) -> str:
    session = RESULTS / name
    lines = [f"# Issue 13's ratios, {name} (`python bench/gpu/ratios.py`)", "",
             "| ratio | measured | goal | met | from |", "|---|---|---|---|---|"]
    for ratio in SESSIONS[name]:
        m = measure(ratio, session)
        goal = f"{'>=' if ratio.at_least else '<='} {ratio.goal:g}"
        if m.values is None:
            lines.append(f"| {ratio.name} | not measured: {m.missing} | {goal} | | `{ratio.call}` |")
            continue
        shown = ", ".join(f"{v:.1f}" if ratio.kind == "first_step" else f"{v:.2f}" for v in m.values)
        lines.append(f"| {ratio.name} | {shown} ({m.detail}) | {goal} | {'yes' if m.met else 'no'} | "
                     f"`{ratio.call}`: {', '.join((*ratio.runs, *ratio.against))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    for name in argv or SESSIONS:
        text = render(name)
        (RESULTS / name / "ratios.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
