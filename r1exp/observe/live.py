"""The console during training: a compact live view instead of TRL's log dictionaries.

`attach(trainer, run_dir)` takes transformers' ProgressCallback / PrinterCallback (the tqdm bar and the 40-key
`{'loss': ...}` dictionary printed at every step) off the trainer and puts `LiveView` in their place:

- on a terminal (rich): a progress bar with step / total, elapsed and ETA, and under it the total reward, each
  reward's mean, the mean completion length and the step time;
- in a multirun job, or when the output is not a terminal (CI, SLURM logs, a pipe): one plain line every N steps
  (about ten lines a run, and at least one a minute);
- in both: a warning when training has no signal (most groups with the same reward for every completion, every
  completion cut at max_completion_length, the reward flat for many steps).

The ETA and the step time leave out the first step, which pays for warm-up (compiling, the engine's first batch,
caches): on CPU it took 15 s where the next ones took 0.4 s, and the ETA it gave was 40 times too long. Until a
second step has ended there is no ETA, and the line shows the first step's time as such.

Every full dictionary goes to `train.log` in the run folder (one line per log, with its step) as well as to
metrics.jsonl (r1exp.observe.tracking); so does what the libraries print (r1exp.observe.console). `R1EXP_LIVE`
takes words separated by commas: `rich` or `plain` forces a mode, `verbose` leaves the libraries' output on the
console (`R1EXP_LIVE=plain,verbose`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from r1exp.observe.console import LOG_FILE

ZERO_STD_SHARE = 0.75    # "most groups": this share of groups with zero reward std, over the last WINDOW logs
CLIPPED_SHARE = 0.99     # "all completions clipped"
FLAT_STEPS = 10          # "reward flat": the same total reward (within FLAT_RANGE) for this many logged steps
FLAT_RANGE = 1e-3
WINDOW = 3
HEARTBEAT_S = 60.0       # plain mode: a line at least this often
_open: list = []          # rich displays still on screen (closed by close_all before the closing summary)


@dataclass
class Step:
    """What the view shows of one logged step."""

    step: int
    total: int
    elapsed_s: float
    eta_s: float | None
    reward: float | None
    rewards: dict = field(default_factory=dict)   # reward name -> mean
    length: float | None = None
    step_time_s: float | None = None     # mean of the last steps after the first
    first_step_s: float | None = None    # the first step's time (warm-up included), shown until there is a mean
    tools: dict = field(default_factory=dict)    # tool runs: calls / failures / turns (TRL's tools/*, r1exp's turns)


def reward_means(logs: dict) -> dict:
    """{name: mean} from TRL's `rewards/<name>/mean` keys, in logged order."""
    return {k.split("/")[1]: v for k, v in logs.items()
            if k.startswith("rewards/") and k.endswith("/mean") and k.count("/") == 2 and _num(v)}


TOOL_KEYS = {"calls": "tools/call_frequency", "failures": "tools/failure_frequency", "turns": "tools/turns"}


def tool_stats(logs: dict) -> dict:
    """{calls, failures, turns} of a tool run's logged step (empty without tools)."""
    return {name: float(logs[key]) for name, key in TOOL_KEYS.items() if _num(logs.get(key))}


def stats_text(s: Step) -> str:
    """'reward 0.84 (accuracy 0.31, format 0.53) | length 17.9 | 0.31 s/step'"""
    parts = [f"reward {_f(s.reward)}" + (" (" + ", ".join(f"{k} {_f(v)}" for k, v in s.rewards.items()) + ")"
                                          if s.rewards else "")]
    if s.length is not None:
        parts.append(f"length {s.length:.1f}")
    if s.tools:
        t = s.tools
        parts.append(", ".join(text for text in (
            f"tool calls {t['calls']:.2f}/completion" if "calls" in t else None,
            f"{t['failures']:.0%} failed" if "failures" in t else None,
            f"{t['turns']:.2f} turns" if "turns" in t else None) if text))
    if s.step_time_s is not None:
        parts.append(f"{s.step_time_s:.2f} s/step")
    elif s.first_step_s is not None:
        parts.append(f"first step {s.first_step_s:.2f} s (warm-up)")
    return " | ".join(parts)


def plain_line(s: Step) -> str:
    """'step 10/50 (20%) 0:00:04 eta 0:00:16 | reward ...'"""
    pct = f" ({100 * s.step // s.total}%)" if s.total else ""
    eta = f" eta {clock(s.eta_s)}" if s.eta_s is not None else ""
    return f"step {s.step}/{s.total or '?'}{pct} {clock(s.elapsed_s)}{eta} | {stats_text(s)}"


def clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Signals:
    """Warnings for training without signal, each reported when it starts (and again if it comes back)."""

    def __init__(self, max_completion_length: int | None = None):
        self.max_completion_length = max_completion_length
        self.history: list[dict] = []
        self.active: set[str] = set()

    def update(self, logs: dict) -> list[str]:
        """The warnings that start with this log line."""
        self.history.append(logs)
        now = self.current()
        new = [text for kind, text in now.items() if kind not in self.active]
        self.active = set(now)
        return new

    def current(self) -> dict:
        out = {}
        recent = self.history[-WINDOW:]
        zero = [r["frac_reward_zero_std"] for r in recent if _num(r.get("frac_reward_zero_std"))]
        if len(zero) == min(WINDOW, len(self.history)) and zero and sum(zero) / len(zero) >= ZERO_STD_SHARE:
            out["zero_std"] = (f"no signal: {100 * sum(zero) / len(zero):.0f}% of groups gave every completion the same "
                               "reward (frac_reward_zero_std); GRPO learns nothing from them. Done if the rewards are "
                               "at their best; if not, make the task fit the model, or raise trainer.num_generations "
                               "or trainer.temperature")
        clipped = self.history[-1].get("completions/clipped_ratio")
        if _num(clipped) and clipped >= CLIPPED_SHARE:
            limit = f"={self.max_completion_length}" if self.max_completion_length else ""
            out["clipped"] = (f"every completion was cut at max_completion_length{limit} (completions/clipped_ratio "
                              f"{clipped:.2f}): raise trainer.max_completion_length")
        rewards = [r["reward"] for r in self.history[-FLAT_STEPS:] if _num(r.get("reward"))]
        if len(rewards) >= FLAT_STEPS and max(rewards) - min(rewards) <= FLAT_RANGE:
            out["flat"] = (f"reward flat at {rewards[-1]:.3f} for the last {FLAT_STEPS} steps: nothing is being "
                           "learned (check the rewards, the learning rate and the no-signal warnings)")
        return out


def choose_mode(multirun: bool, stream=None) -> str:
    from r1exp.observe.console import settings

    forced = [word for word in ("rich", "plain") if word in settings()]  # R1EXP_LIVE=rich|plain[,verbose]
    if forced:
        return forced[0]
    stream = stream or sys.stdout
    return "plain" if multirun or not _isatty(stream) else "rich"


def plain_every(total: int) -> int:
    return max(1, total // 10)


def live_view(run_dir: Path, mode: str = "plain", max_completion_length: int | None = None, console=None):
    """The TrainerCallback (see the module doc)."""
    from transformers import TrainerCallback

    class LiveView(TrainerCallback):
        def __init__(self):
            self.mode = mode
            self.log_path = Path(run_dir) / LOG_FILE
            self.signals = Signals(max_completion_length)
            self.console = console
            self.live = self.progress = self.task = None
            self.stats = None
            self.start = self.first_step_end = None
            self.last_step_end = None
            self.step_times: list[float] = []
            self.last_line_at = 0.0

        # --- trainer events ---------------------------------------------------------------------------------
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.start = self.last_step_end = time.monotonic()
            self._write_log(f"training: {state.max_steps} steps")
            logs = f"full logs{' and library output' * _routed()} in {self.log_path}"
            if self.mode == "rich":
                self._print(logs)
                self._start_rich(state.max_steps, state.global_step)
            else:
                every = plain_every(state.max_steps)
                often = f"{every} steps" if every > 1 else "step"
                self._print(f"training: {state.max_steps} steps; a line every {often}, {logs}")

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if self.last_step_end is not None:
                self.step_times.append(now - self.last_step_end)
            self.last_step_end = now
            if self.first_step_end is None:
                self.first_step_end = (now, state.global_step)
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            self._write_log(f"step {state.global_step}/{state.max_steps} {json.dumps(_plain(logs))}")
            if "reward" not in logs:  # the end-of-training line (train_runtime, ...): file only
                return
            s = self._step(state, logs)
            for warning in self.signals.update(logs):
                self._warn(f"step {s.step}: {warning}")
            if self.mode == "rich":
                self.stats.plain = stats_text(s)
                self.progress.update(self.task, completed=s.step, eta=f"eta {clock(s.eta_s)}")
                return
            now = time.monotonic()
            if s.step % plain_every(s.total) == 0 or s.step in (1, s.total) or now - self.last_line_at >= HEARTBEAT_S:
                self.last_line_at = now
                self._print(plain_line(s))

        def on_train_end(self, args, state, control, **kwargs):
            self.close()

        # --- output -----------------------------------------------------------------------------------------
        def close(self):
            if self.live is not None:
                self.live.stop()
                self.live = None

        def _step(self, state, logs) -> Step:
            total, step = int(state.max_steps or 0), int(state.global_step)
            now = time.monotonic()
            elapsed = now - (self.start or now)
            eta = None
            if self.first_step_end is not None and total:
                t0, s0 = self.first_step_end   # the first step pays for warm-up: the ETA uses the later ones only
                if step > s0:
                    eta = (now - t0) / (step - s0) * max(total - step, 0)
            later = self.step_times[1:][-5:]   # the last 5 steps, never the first
            if later:
                step_time = sum(later) / len(later)
            elif not self.step_times and step > 1:  # no step events (logs replayed): TRL's own figure
                step_time = _float(logs.get("step_time"))
            else:
                step_time = None
            first = self.step_times[0] if self.step_times else None
            return Step(step, total, elapsed, eta, _float(logs.get("reward")), reward_means(logs),
                        _float(logs.get("completions/mean_length")), step_time, first_step_s=first,
                        tools=tool_stats(logs))

        def _start_rich(self, total: int, done: int):
            from rich.console import Console, Group
            from rich.live import Live
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.text import Text

            self.console = self.console or Console()
            self.progress = Progress(TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.fields[eta]}"), console=self.console)
            self.task = self.progress.add_task("train", total=total, completed=done, eta="eta -:--:--")
            self.stats = Text("waiting for the first step ...", style="cyan")
            self.live = Live(Group(self.progress, self.stats), console=self.console, refresh_per_second=4,
                             transient=False)
            self.live.start()
            _open.append(self)

        def _print(self, text: str):
            if self.console is not None:
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                print(text, flush=True)

        def _warn(self, text: str):
            self._write_log(f"warning: {text}")
            if self.mode == "rich":
                from rich.markup import escape

                self.console.print(f"[bold yellow]warning[/] {escape(text)}", highlight=False, soft_wrap=True)
            else:
                self._print(f"warning: {text}")

        def _write_log(self, line: str):
            with self.log_path.open("a") as f:
                f.write(line + "\n")

    return LiveView()


def close_all() -> None:
    """End every live display still on screen (a run that failed during training never reached on_train_end)."""
    while _open:
        _open.pop().close()


def attach(trainer, run_dir: Path, multirun: bool | None = None):
    """Replace transformers' console printers on `trainer` with the live view; the view."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if multirun is None:
        from r1exp.records.manifest import hydra_job

        multirun = hydra_job().get("mode") == "multirun"
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK

    for printer in {ProgressCallback, PrinterCallback, DEFAULT_PROGRESS_CALLBACK}:
        trainer.remove_callback(printer)
    view = live_view(run_dir, choose_mode(multirun), getattr(trainer.args, "max_completion_length", None))
    trainer.add_callback(view)
    return view


def _routed() -> bool:
    from r1exp.observe.console import routed

    return routed()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _float(v) -> float | None:
    v = _plain(v)
    return float(v) if _num(v) else None


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v.item() if hasattr(v, "item") else v
