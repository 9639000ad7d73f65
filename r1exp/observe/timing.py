"""Where the time goes: each training step split into phases, and the start of a run split into its parts.

Per step (`attach(trainer)`, once the trainer is built): the trainer's own methods are wrapped, on the instance, with
timers, and a callback adds to every log line (so metrics.jsonl and W&B get them, through r1exp.observe.tracking):

    time/generation          the trainer's `_generate` (tokenize, generate with vLLM or transformers, decode)
    time/weight_sync         pushing the policy's weights into the vLLM engine (`vllm_generation.sync_weights`,
                             `_move_model_to_vllm` in other TRL versions); 0 when nothing is pushed
    time/logprobs            the old-policy / reference log-probs computed before the loss
                             (`_get_per_token_logps_and_entropies` outside the loss; ~0 on-policy, where pi_old
                             comes from the loss's own forward: r1exp/patches/trl_on_policy.py, unsloth_on_policy.py)
    time/backward_optimizer  the loss's forward, backward, gradient clipping and the optimizer + scheduler step
    time/rewards             the reward functions (`_calculate_rewards`)
    time/other               the rest of the step: advantages, padding, data loading, logging and callbacks of the
                             previous step, checkpoints
    time/step                wall seconds from the end of the previous step (or the start of training) to the end
                             of this one, so the steps add up to the training's wall time
    time/gc                  not a phase: of the step, the seconds Python's garbage collector held the process
                             (inside whichever phase it struck), with gc/full_collections, the number of full
                             collections (r1exp/observe/gc_pauses.py: what they cost a run)

On a GPU each log line also carries `memory/<phase>`: the most memory (GiB) torch's allocator held while that phase
was the innermost one (`memory/other`: outside every phase), the maximum over the steps since the last log line.
They say which phase sets the run's peak (the generation's KV cache, the log-prob head, the backward pass) and are
read next to the memory plan's terms (bench/gpu/plan_vs_measured.py). vLLM memory outside torch's allocator is not
in them; the device-level peak is in run.json (`gpu_memory`).

Each phase counts its own time only (a weight sync inside generation is counted as weight sync, not twice), so
the phases never add up to more than the step; `time/other` is the step minus the phases. The methods are looked
up by name: what the installed TRL (or Unsloth's trainer) has is timed, what it lacks is left out (its time shows
in `time/other`), nothing fails. With logging_steps > 1 a log line carries the mean per step since the last one.

On a GPU the timers call `torch.cuda.synchronize()` when a phase starts and ends, so the kernels a phase launched
are counted in that phase and not in the next one. That costs a few microseconds per call and about ten calls per
step, and only removes CPU/GPU overlap across phase boundaries (seconds-long phases); `attach(sync=False)` turns it
off. On CPU nothing is synchronised.

Start-up (`Startup`, written to run.json under `startup`): seconds from the process start to the run's start
(interpreter, imports of the entry point, Hydra, the checks of every job), checks and tracker, then inside the build:
heavy imports (first imports of torch, transformers, TRL, vLLM, ...), building a local model (`r1exp.models.tiny`), loading
the model (`from_pretrained`), starting the vLLM engine (`vllm.LLM(...)`, split into its weight loading, memory
profiling, warm-up and CUDA graph capture by timing vLLM's worker methods, plus vLLM's own torch.compile figure),
the rest of the build; then the trainer's set-up before the first step, the first step with its first generation,
and the time from the process start to the end of the first step. The build's functions are patched only while the
build runs and put back afterwards; what a vLLM version lacks is left out of the split (its time stays in
engine_start_s).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from r1exp.machine import kernel_cache
from r1exp.plan.memory import GiB
from r1exp.observe.gc_pauses import Pauses
from r1exp.patches.timing_hooks import STARTUP_TARGETS, ImportTimer, PostImportPatcher, wrap_method

PHASES = ("generation", "weight_sync", "logprobs", "backward_optimizer", "rewards")
KEYS = tuple(f"time/{p}" for p in (*PHASES, "other", "step"))
GC_KEYS = ("time/gc", "gc/full_collections")   # inside the phases, not one of them
_REST = "rest"  # a wrapped method whose own time belongs to time/other (TRL's _prepare_inputs)

# Trainer methods -> phase. The first ones that exist on the trainer are wrapped; nested calls are fine.
TRAINER_METHODS = {
    "training_step": "backward_optimizer",   # its own time: the loss's forward and backward
    "_clip_grad_norm": "backward_optimizer",
    "_prepare_inputs": _REST,                 # generation, log-probs and rewards inside it have their own phases
    "_generate": "generation",
    "_move_model_to_vllm": "weight_sync",      # TRL < 0.2x, Unsloth's trainer
    "_get_per_token_logps_and_entropies": "logprobs",
    "_get_per_token_logps": "logprobs",
    "_calculate_rewards": "rewards",
}
# Methods of the trainer's vLLM generation object (TRL's `vllm_generation`), when it has one.
ENGINE_METHODS = {"sync_weights": "weight_sync", "generate": "generation"}
# Log-probs computed inside the loss are part of the training forward pass, not of time/logprobs.
_INSIDE_LOSS = "backward_optimizer"


def _cuda_synchronize() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class PhaseClock:
    """Seconds per named phase, each counting only its own time (a nested phase's time is taken out of the
    phase around it). `sync` is called at every phase boundary (torch.cuda.synchronize on a GPU). With `memory`
    (bytes allocated at peak since its previous call, which starts a new interval), each phase also gets the peak
    of the intervals in which it was the innermost one; the time outside every phase counts as `other`."""

    def __init__(self, sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter,
                 memory: Callable[[], int] | None = None):
        self.sync, self.clock, self.memory = sync, clock, memory
        self.totals: dict[str, float] = defaultdict(float)
        self.peaks: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []   # [phase, start, seconds of nested phases]
        self._thread = threading.get_ident()

    def top(self) -> str | None:
        return self._stack[-1][0] if self._stack else None

    def boundary(self) -> None:
        """A phase starts or ends: wait for the GPU, and close the memory interval of the innermost phase."""
        if self.sync:
            self.sync()
        if self.memory:
            phase = self.top() or "other"
            phase = "other" if phase == _REST else phase   # as in time/other
            self.peaks[phase] = max(self.peaks[phase], self.memory())

    def enter(self, phase: str) -> None:
        self.boundary()
        self._stack.append([phase, self.clock(), 0.0])

    def exit(self) -> None:
        self.boundary()
        phase, start, nested = self._stack.pop()
        elapsed = self.clock() - start
        self.totals[phase] += elapsed - nested
        if self._stack:
            self._stack[-1][2] += elapsed

    @contextlib.contextmanager
    def phase(self, name: str):
        if threading.get_ident() != self._thread:   # another thread (a logger, a server): not part of the step
            yield
            return
        self.enter(name)
        try:
            yield
        finally:
            self.exit()

    def take(self) -> dict[str, float]:
        """The totals so far, and start again from zero (phases still open keep running)."""
        out, self.totals = dict(self.totals), defaultdict(float)
        return out

    def take_peaks(self) -> dict[str, int]:
        """The memory peaks (bytes) per phase so far, and start again."""
        out, self.peaks = dict(self.peaks), defaultdict(int)
        return out




def step_callback(clock: PhaseClock, startup: Startup | None = None, pauses: Pauses | None = None):
    """A TrainerCallback: closes each step's phases and adds the time/* keys to every log line; with `pauses`
    (installed by the caller, removed when training ends) the garbage collector's per step too."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.last_end: float | None = None
            self.window: list[dict] = []   # steps since the last log line
            self.optimizer_open = False
            self.steps = 0

        def on_train_begin(self, args, state, control, **kwargs):
            clock.boundary()
            clock.take()                   # anything timed before training (e.g. a sanity generation) is not a step
            clock.take_peaks()
            if pauses is not None:
                pauses.take()
            self.last_end = clock.clock()
            if startup is not None:
                startup.train_begin()

        def on_train_end(self, args, state, control, **kwargs):
            if pauses is not None:
                pauses.remove()

        def on_step_begin(self, args, state, control, **kwargs):
            if startup is not None and self.steps == 0:
                startup.first_step_begin()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if not self.optimizer_open:
                clock.enter("backward_optimizer")   # optimizer.step, scheduler.step, zero_grad: up to on_step_end
                self.optimizer_open = True

        def on_step_end(self, args, state, control, **kwargs):
            if self.optimizer_open:
                clock.exit()
                self.optimizer_open = False
            else:
                clock.boundary()
            now = clock.clock()
            step = now - (self.last_end if self.last_end is not None else now)
            self.last_end = now
            phases = clock.take()
            row = {f"time/{p}": phases.get(p, 0.0) for p in PHASES}
            row["time/other"] = max(0.0, step - sum(row.values()))
            row["time/step"] = step
            row.update({f"memory/{p}": peak / GiB for p, peak in clock.take_peaks().items()})
            if pauses is not None:
                row["time/gc"], row["gc/full_collections"] = pauses.take()
            self.window.append(row)
            self.steps += 1
            if startup is not None and self.steps == 1:
                startup.first_step(step, row["time/generation"] + row["time/weight_sync"])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or not self.window:
                return
            for key in (*KEYS, *GC_KEYS):
                if key in self.window[0]:
                    logs[key] = round(statistics.fmean(r[key] for r in self.window), 6)
            for key in sorted({k for r in self.window for k in r if k.startswith("memory/")}):
                logs[key] = round(max(r.get(key, 0.0) for r in self.window), 3)
            self.window = []

    return StepTimer()


def attach(trainer, startup: Startup | None = None, sync: bool | None = None):
    """Time the phases of every step of `trainer` (a TRL GRPOTrainer, or a subclass such as Unsloth's).

    Wraps the methods of TRAINER_METHODS / ENGINE_METHODS that exist, adds the callback first among the trainer's
    callbacks (so the keys reach W&B and metrics.jsonl), and returns the callback; its `.timed` lists what is timed.
    `startup`: the run's Startup (default: the one started last in this process), told about the first step."""
    from r1exp.observe.gpu_memory import take_allocated_peak

    gpu = _cuda_available()
    sync = gpu if sync is None else sync
    clock = PhaseClock(sync=_cuda_synchronize if sync else None, memory=take_allocated_peak if gpu else None)
    pauses = Pauses().install()
    timed = []
    for name, phase in TRAINER_METHODS.items():
        skip = _INSIDE_LOSS if phase == "logprobs" else None
        if wrap_method(trainer, name, phase, clock, skip_inside=skip):
            timed.append(name)
    engine = getattr(trainer, "vllm_generation", None)
    if engine is not None:
        for name, phase in ENGINE_METHODS.items():
            if wrap_method(engine, name, phase, clock):
                timed.append(f"vllm_generation.{name}")
    startup = startup if startup is not None else Startup.current
    callback = step_callback(clock, startup, pauses)
    callback.timed = timed
    handler = trainer.callback_handler
    handler.callbacks.insert(0, callback)   # first: the keys it adds reach every later callback (W&B, metrics)
    if startup is not None:
        compile_s = engine_compile_seconds(trainer)
        startup.record(timed=timed, cuda_synchronize=bool(sync),
                       **({"engine_compile_s": compile_s} if compile_s is not None else {}))
    return callback


def _cuda_available() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


# --- summaries of a run's steps --------------------------------------------------------------------------------

def summarize_steps(rows: list[dict]) -> dict:
    """Mean seconds per step and phase over the steps after the first (the first carries warm-up: compilation,
    the first weight sync), and the first step's own; {} when the steps carry no timing."""
    timed = [r for r in rows if "time/step" in r]
    if not timed:
        return {}
    later = timed[1:] or timed
    out = {f"time_mean/{k.split('/', 1)[1]}": statistics.fmean(float(r.get(k, 0.0)) for r in later) for k in KEYS}
    if all("time/gc" in r for r in later):
        out["time_mean/gc"] = statistics.fmean(float(r["time/gc"]) for r in later)
    out["time_first/step"] = float(timed[0]["time/step"])
    return out


# --- start-up ------------------------------------------------------------------------------------------------

BUILD_PARTS = ("imports", "model_build", "model_load", "engine_start", "engine_weights_load", "engine_profile",
               "engine_warmup", "graph_capture")
# The start of a run, part after part (run.json `startup`, each as `<part>_s`): they add up to process_to_first_step_s.
STARTUP_PARTS = ("before_run", "checks", *BUILD_PARTS, "build_other", "train_setup", "first_step_wait", "first_step")


def process_start_time() -> float | None:
    """This process's start (seconds since the epoch), or None where it cannot be read."""
    try:
        import psutil

        return psutil.Process(os.getpid()).create_time()
    except Exception:  # noqa: BLE001 - psutil missing or no /proc: the first figure is left out
        return None


class Startup:
    """The start of one run, in seconds per part; `on_change(parts)` gets the parts whenever they grow (run.py
    writes them into run.json under `startup`). `Startup.current` is the one created last in this process.

    The parts follow one another and add up to `process_to_first_step_s`: before_run (process start to the run:
    interpreter, entry point imports, Hydra, the checks of every job; first run of a process only), checks (the
    run's checks, plan, reward sanity check, tracker), the build (imports, model_build, model_load, engine_start,
    engine_weights_load, engine_profile, engine_warmup, graph_capture, build_other), train_setup (post-build check
    to the start of training), first_step_wait (training set-up to the first step), first_step. Not part of the
    sum: engine_compile_s (vLLM's torch.compile time, inside engine_profile/engine_warmup),
    first_generation_s (generation + weight sync of the first step), imports_by_package_s (imports split by
    package, largest first: where the imports part goes) and kernels_compiled (the Triton kernels compiled from the
    build to the end of the first step, into kernel_cache_dir: 0 where the cache held them, r1exp/machine/kernel_cache.py)."""

    current: Startup | None = None

    def __init__(self, on_change: Callable[[dict], None] | None = None):
        self.on_change = on_change
        self.t0 = time.perf_counter()
        started = process_start_time()
        self.parts: dict = {}
        if started is not None and Startup.current is None:  # a later job of a multirun started long after it
            self.parts["before_run_s"] = round(max(0.0, time.time() - started), 3)
        self._build_end: float | None = None
        self._train_begin: float | None = None
        self._kernels_before: set[str] | None = None
        Startup.current = self

    def record(self, **fields) -> None:
        self.parts.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in fields.items()})
        if self.on_change is not None:
            self.on_change(dict(self.parts))

    @contextlib.contextmanager
    def build(self):
        """Around the build: the checks before it (since the run started), then the parts of the build itself."""
        start = time.perf_counter()
        self.record(checks_s=start - self.t0)
        self._kernels_before = kernel_cache.triton_kernels()
        clock = PhaseClock()
        imports, patches = ImportTimer(clock), PostImportPatcher(clock, STARTUP_TARGETS)
        patches.install()
        imports.install()
        try:
            yield
        finally:
            imports.uninstall()
            patches.uninstall()
            self._build_end = time.perf_counter()
            totals = clock.take()
            parts = {f"{p}_s": totals.get(p, 0.0) for p in BUILD_PARTS}
            parts["build_other_s"] = max(0.0, self._build_end - start - sum(parts.values()))
            self.record(**parts, imports_by_package_s=imports.shares())

    def train_begin(self) -> None:
        self._train_begin = time.perf_counter()
        if self._build_end is not None:
            self.record(train_setup_s=self._train_begin - self._build_end)

    def first_step_begin(self) -> None:
        if self._train_begin is not None:
            self.record(first_step_wait_s=time.perf_counter() - self._train_begin)

    def first_step(self, step_s: float, generation_s: float) -> None:
        fields = {"first_step_s": step_s, "first_generation_s": generation_s,
                  "run_to_first_step_s": time.perf_counter() - self.t0}
        if "before_run_s" in self.parts:
            fields["process_to_first_step_s"] = fields["run_to_first_step_s"] + self.parts["before_run_s"]
        if self._kernels_before is not None:
            fields.update(kernels_compiled=len(kernel_cache.triton_kernels() - self._kernels_before),
                          kernel_cache_dir=str(kernel_cache.triton_dir()))
        self.record(**fields)


def engine_compile_seconds(trainer) -> float | None:
    """vLLM's own torch.compile time for the trainer's engine (TRL colocate, or Unsloth's), where it records one."""
    engine = getattr(getattr(trainer, "vllm_generation", None), "llm", None) or getattr(trainer, "llm", None)
    if engine is None:
        model = getattr(trainer, "model", None)
        engine = getattr(model, "vllm_engine", None)
    config = getattr(getattr(getattr(engine, "llm_engine", None), "vllm_config", None), "compilation_config", None)
    seconds = getattr(config, "compilation_time", None)
    return float(seconds) if isinstance(seconds, (int, float)) else None




