"""Issue 13's ratios and r1exp's own, computed from the committed GPU results (bench/variants.py folders).

    python bench/gpu/ratios.py            # writes bench/results/gpu/ratios.md, prints it

Every ratio is declared once in CLAIMS (which claim, which result folder, the runs, the goal); docs/benchmarks.md and
tests/test_gpu_ratios.py read the same computation, so a re-measured result that misses a goal shows here and fails
there. Each claim holds its current result only: a new measurement replaces the folder its ratios read. Runs of one
folder ran back to back on one machine (one device call); a ratio never mixes folders except through a floor that ran
in the same call as the runs it divides.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gpu"
RATIOS_MD = RESULTS / "ratios.md"


@dataclass(frozen=True)
class Ratio:
    name: str                    # what is compared, as docs/benchmarks.md says it
    call: str                    # the result folder under bench/results/gpu (one device call)
    kind: str                    # step_over_floor | step_over_step | peak_over_peak | start_over_start | first_step
                                 # | text_cost
    runs: tuple[str, ...]        # the runs compared (their labels in variants.json)
    goal: float                  # upper bound (ratios, seconds) or lower bound (speed-ups)
    at_least: bool = False       # True: the goal is a lower bound
    against: tuple[str, ...] = ()   # *_over_*: the denominators, one per run, one for all, or several for one run
    part: str = "process_to_first_step_s"   # start_over_start: the run.json `startup` figure compared


@dataclass(frozen=True)
class Claim:
    title: str                   # the heading in ratios.md and docs/benchmarks.md
    ratios: tuple[Ratio, ...]


Q05_LATER = ("q05_unsloth_warm", "q05_unsloth_evicted", "q05_unsloth_all", "q05_unsloth_grpo")

CLAIMS = {
    # issue 13: r1exp's step within 1.3x of vLLM alone + the training step alone, on the same tokens
    "step_floor": Claim("r1exp's step / its floor (vLLM alone + the training step alone, the run's shape)", (
        Ratio("0.5B 64 x 256, PEFT (median step; the floor after the second run)", "vllm_text/0.5b",
              "step_over_floor", ("q05_peft", "q05_peft_2"), 1.3),
        Ratio("0.5B 64 x 256, Unsloth (median step; its GRPOConfig before r1exp pinned TRL's defaults: the same "
              "compute, a loss with no tokens; floor: TRL's engine alone)", "vllm_text/0.5b", "step_over_floor",
              ("q05_unsloth",), 1.3),
        Ratio("1.5B 32 x 512, PEFT (median step)", "vllm_vs_hf", "step_over_floor", ("q15_peft",), 1.3),
        Ratio("1.5B 32 x 512, Unsloth (median step; floor: TRL's engine alone)", "vllm_vs_hf", "step_over_floor",
              ("q15_unsloth",), 1.3),
        Ratio("7B 64 x 256, PEFT (median step; pi_old from the loss's forward, runs before and after TRL's pass)",
              "logprob_reuse/trl_7b", "step_over_floor", ("q7_peft", "q7_peft_2"), 1.3),
        Ratio("7B 64 x 256, Unsloth (median step; Unsloth's own log-prob pass still ran; floor: TRL's engine alone)",
              "step_floor/unsloth_7b", "step_over_floor", ("q7_unsloth_2",), 1.3),
    )),
    # issue 13: the first step within 60 s of the process start; what the kernel caches, Unsloth's import and the page
    # cache change (loader.trl_trainers=grpo generates TRL's GRPO trainer alone, the default)
    "startup": Claim("Start to first step, 0.5B 64 x 256 (s, run.json startup.process_to_first_step_s)", (
        Ratio("Unsloth, a fresh machine's first run, hardware.kernel_cache holding the kernels another H200 compiled "
              "(the defaults)", "startup/fresh_machine_carried_cache", "first_step", ("q05_unsloth_carried",), 60.0),
        Ratio("PEFT, the same fresh machine, the carried kernel cache", "startup/fresh_machine_carried_cache",
              "first_step", ("q05_peft_carried",), 60.0),
        Ratio("Unsloth, a fresh machine's first run, every kernel cache empty (trl_trainers=all)",
              "startup/fresh_machine_cold", "first_step", ("q05_unsloth_first",), 60.0),
        Ratio("PEFT, that machine's second run (PEFT's kernels not yet compiled)", "startup/fresh_machine_cold",
              "first_step", ("q05_peft_first",), 60.0),
        Ratio("Unsloth, the first machine's later runs (trl_trainers=all, the same with the libraries evicted, all / "
              "grpo)", "startup/same_machine_later", "first_step", Q05_LATER, 60.0),
        Ratio("Unsloth, the second machine's later runs (trl_trainers=all / grpo)",
              "startup/fresh_machine_carried_cache", "first_step", ("q05_unsloth_all", "q05_unsloth_2"), 60.0),
        Ratio("imports, trl_trainers=grpo / all, Unsloth (back to back)", "startup/same_machine_later",
              "start_over_start", ("q05_unsloth_grpo",), 0.9, against=("q05_unsloth_all",), part="imports_s"),
        Ratio("imports, trl_trainers=grpo / all, Unsloth (the second machine, interleaved)",
              "startup/fresh_machine_carried_cache", "start_over_start", ("q05_unsloth_2",), 0.9,
              against=("q05_unsloth_all",), part="imports_s"),
        Ratio("start to first step, the packages' native libraries evicted from the page cache / in it, Unsloth "
              "(back to back)", "startup/same_machine_later", "start_over_start", ("q05_unsloth_evicted",), 1.05,
              against=("q05_unsloth_warm",)),
    )),
    # r1exp's own goal: Unsloth, sharing its weights with its engine, no slower than TRL colocate
    "unsloth_vs_peft": Claim("Unsloth's step / PEFT's step (TRL colocate), same call", (
        Ratio("0.5B 64 x 256 (median; interleaved, twice each)", "startup/fresh_machine_carried_cache",
              "step_over_step", ("q05_unsloth_carried", "q05_unsloth_2"), 1.0,
              against=("q05_peft_carried", "q05_peft_2")),
        Ratio("1.5B 32 x 512 (median)", "vllm_vs_hf", "step_over_step", ("q15_unsloth",), 1.0, against=("q15_peft",)),
        Ratio("7B 64 x 256 (median; back to back; Unsloth's GRPOConfig before r1exp pinned TRL's defaults)",
              "vllm_text/0.5b_and_7b", "step_over_step", ("q7_unsloth",), 1.0, against=("q7_peft",)),
    )),
    # issue 13: Unsloth's shared weights at most half TRL colocate's peak
    "unsloth_peak": Claim("Unsloth's peak / TRL colocate's peak, 7B 64 x 256 (back to back)", (
        Ratio("TRL with sleep mode (its default)", "unsloth_memory/peaks_7b", "peak_over_peak", ("q7_unsloth",), 0.5,
              against=("q7_peft",)),
        Ratio("TRL awake (engine.sleep_mode=false)", "unsloth_memory/peaks_7b", "peak_over_peak", ("q7_unsloth",), 0.5,
              against=("q7_peft_awake",)),
    )),
    # r1exp's own: engine.gpu_memory_utilization=auto gives the engine one generation batch of KV cache
    "kv_cache": Claim("The engine's explicit KV cache (engine.gpu_memory_utilization=auto) / a memory fraction (0.15), "
                      "Unsloth 7B 64 x 256 (back to back)", (
        Ratio("peak", "unsloth_memory/peaks_7b", "peak_over_peak", ("q7_unsloth",), 0.9, against=("q7_unsloth_frac",)),
        Ratio("step (median; no slower: within 5%)", "unsloth_memory/peaks_7b", "step_over_step", ("q7_unsloth",),
              1.05, against=("q7_unsloth_frac",)),
    )),
    # r1exp's own: Unsloth's loss recomputes its logits in the backward (loader.recompute_logits, the default);
    # `*_held` runs set loader.recompute_logits=false (Unsloth's own behaviour)
    "unsloth_logits": Claim("Unsloth's loss logits recomputed in the backward / held (back to back)", (
        Ratio("peak, 7B 64 x 256", "unsloth_logits/7b", "peak_over_peak", ("q7_unsloth",), 0.9,
              against=("q7_unsloth_held",)),
        Ratio("peak, 0.5B 64 x 256", "unsloth_logits/0.5b", "peak_over_peak", ("q05_unsloth",), 0.6,
              against=("q05_unsloth_held",)),
        Ratio("step, 7B 64 x 256 (median; no slower: within 5%)", "unsloth_logits/7b", "step_over_step",
              ("q7_unsloth",), 1.05, against=("q7_unsloth_held",)),
        Ratio("step, 0.5B 64 x 256 (median; no slower: within 5%)", "unsloth_logits/0.5b", "step_over_step",
              ("q05_unsloth",), 1.05, against=("q05_unsloth_held",)),
        Ratio("step, 0.5B 64 x 256, a second pair (median)", "unsloth_logits/0.5b_and_1.5b", "step_over_step",
              ("q05_unsloth_2",), 1.05, against=("q05_unsloth_held_2",)),
    )),
    # r1exp's own: pi_old of TRL's importance-sampling correction from the loss's forward when the run is on-policy
    # (loader.reuse_training_logps, the default); `*_pass` runs keep TRL's extra log-prob pass
    "trl_logprob_pass": Claim("PEFT's step with pi_old from the loss's forward / with TRL's extra log-prob pass", (
        Ratio("7B 64 x 256 (median; runs before and after)", "logprob_reuse/trl_7b", "step_over_step",
              ("q7_peft", "q7_peft_2"), 0.95, against=("q7_peft_pass",)),
        Ratio("0.5B 64 x 256 (median; two interleaved pairs)", "logprob_reuse/trl_0.5b", "step_over_step",
              ("q05_peft_2", "q05_peft_3"), 1.0, against=("q05_peft_pass_2", "q05_peft_pass_3")),
    )),
    # the same for Unsloth's trainer; `*_pass` runs keep Unsloth's no-grad log-prob pass. These Unsloth runs trained
    # with Unsloth's own GRPOConfig defaults (truncated completions masked out: loss and gradient norm 0 at these
    # random-weight shapes; r1exp pins TRL's defaults since, r1exp/grpo/args.py); the forward, backward and optimizer
    # ran all the same.
    "unsloth_logprob_pass": Claim("Unsloth's step with pi_old from the loss's forward / with its no-grad log-prob "
                                  "pass", (
        Ratio("step, 7B 64 x 256 (median; back to back)", "logprob_reuse/unsloth_7b", "step_over_step",
              ("q7_unsloth",), 0.95, against=("q7_unsloth_pass",)),
        Ratio("peak, 7B 64 x 256 (no higher)", "logprob_reuse/unsloth_7b", "peak_over_peak", ("q7_unsloth",), 1.0,
              against=("q7_unsloth_pass",)),
        Ratio("step, 0.5B 64 x 256 (median; runs before and after)", "logprob_reuse/unsloth_0.5b", "step_over_step",
              ("q05_unsloth", "q05_unsloth_2"), 1.0, against=("q05_unsloth_pass",)),
    )),
    # r1exp's own: vLLM makes no text TRL throws away (engine.detokenize=auto); `*_text` runs:
    # engine.detokenize=true
    "vllm_text": Claim("vLLM without the text TRL discards (engine.detokenize=auto) / with it, 0.5B 64 x 256", (
        Ratio("vLLM alone (one engine, interleaved; median of 3)", "vllm_text/0.5b", "text_cost", ("q05_peft_2",),
              0.9),
        Ratio("PEFT step (median; the run with the text between)", "vllm_text/0.5b", "step_over_step",
              ("q05_peft", "q05_peft_2"), 0.9, against=("q05_peft_text",)),
        Ratio("PEFT step (median; back to back)", "vllm_text/0.5b_and_7b", "step_over_step", ("q05_peft_unfrozen",),
              0.9, against=("q05_peft_text",)),
        Ratio("Unsloth step (median; back to back)", "vllm_text/0.5b_and_7b", "step_over_step", ("q05_unsloth",), 0.9,
              against=("q05_unsloth_text",)),
    )),
    # issue 13: engine=vllm at least 5x faster per step than engine=hf (transformers' generate)
    "vllm_vs_hf": Claim("engine=hf step / engine=vllm step", (
        Ratio("7B, 16 completions x 512 tokens (median; back to back)", "vllm_vs_hf", "step_over_step",
              ("q7_16x512_hf",), 5.0, at_least=True, against=("q7_16x512_vllm",)),
    )),
}


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


def load(call: str) -> dict | None:
    """A result folder's variants.json (call: its path under bench/results/gpu)."""
    path = RESULTS / call / "variants.json"
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


def measure(ratio: Ratio) -> Measured:
    result = load(ratio.call)
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


def render() -> str:
    lines = ["# GPU ratios (`python bench/gpu/ratios.py`)", "",
             "Computed from the committed results under bench/results/gpu/ (each claim's current result; "
             "docs/benchmarks.md says what was measured and how to run it again). `from`: the result folder and its "
             "runs, numerators first."]
    for claim in CLAIMS.values():
        lines += ["", f"## {claim.title}", "", "| ratio | measured | goal | met | from |", "|---|---|---|---|---|"]
        for ratio in claim.ratios:
            m = measure(ratio)
            goal = f"{'>=' if ratio.at_least else '<='} {ratio.goal:g}"
            if m.values is None:
                lines.append(f"| {ratio.name} | not measured: {m.missing} | {goal} | | `{ratio.call}` |")
                continue
            shown = ", ".join(f"{v:.1f}" if ratio.kind == "first_step" else f"{v:.2f}" for v in m.values)
            lines.append(f"| {ratio.name} | {shown} ({m.detail}) | {goal} | {'yes' if m.met else 'no'} | "
                         f"`{ratio.call}`: {', '.join((*ratio.runs, *ratio.against))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    RATIOS_MD.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
