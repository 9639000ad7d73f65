"""How a run went, in a few lines at its end: the closing summary (and a sweep's).

`print_run_summary(run_dir, manifest)` is called by r1exp.run.run when a run ends, whatever the outcome:
status and exit code, wall time and its split (start-up, checks, build, train, save; `PhaseClock` measures them
and run.json keeps them under `phases`), the reward of the first 10% of steps -> the last 10%, overall and per
reward, peak GPU memory next to the plan (on a GPU), the run folder, the reward curve, and what to do next: sync
or open the W&B run, reproduce it. A failed or interrupted run says what failed and in which phase, where the
traceback (`error.txt`, `save_traceback`) and the checkpoint are, and the resume command. The same text goes to
the run's train.log. `print_sweep_summary` closes a multirun: jobs ok, the best job, the summary files.

`held_out(manifest)` reads a run's held-out evaluation (run.json "eval", written by r1exp.evaluation) for the
summary, `python -m r1exp.runs` and a sweep's summary alike, so all three agree on what a damaged block looks like:
they show it as `?` instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from r1exp.observe import tracking

from r1exp.records.metrics import read_metrics, step_rows

ERROR_FILE = "error.txt"
PHASES = ("startup", "checks", "build", "train", "save")
_process = {"startup_counted": False}


class PhaseClock:
    """Wall time per phase of a run. `enter(name)` closes the current phase and opens the next; `stop()` closes the
    last one and returns {phase: seconds, ..., "total": seconds}. The first run of a process also counts the
    process's start-up (imports, composing and checking the config) before run() was called."""

    def __init__(self, first: str = "checks"):
        self.current = first
        self.since = time.monotonic()
        self.seconds: dict[str, float] = {}
        startup = None if _process["startup_counted"] else _process_age()
        _process["startup_counted"] = True
        if startup is not None:
            self.seconds["startup"] = startup

    def enter(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self.since
        self.current, self.since = name, now

    def stop(self) -> dict:
        self.enter(self.current)
        out = {k: round(v, 2) for k, v in self.seconds.items()}
        out["total"] = round(sum(self.seconds.values()), 2)
        out["last"] = self.current
        return out


def save_traceback(run_dir: Path) -> Path | None:
    """The exception being handled, with its traceback (secrets redacted), in <run_dir>/error.txt. None when it
    cannot be written (a full disk): no error.txt is left then rather than one cut short."""
    from r1exp.records.secrets import redact_text

    path = Path(run_dir) / ERROR_FILE
    try:
        path.write_text(redact_text(traceback.format_exc()))  # an error message may quote a key: kept out
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return None
    return path


def wandb_url() -> str | None:
    """The W&B page of the current run (online runs only)."""
    import sys

    if "wandb" not in sys.modules:
        return None
    run = sys.modules["wandb"].run
    return getattr(run, "url", None) if run is not None and not getattr(run, "offline", False) else None


# --- reading a run -------------------------------------------------------------------------------------------------

def reward_trends(rows: list[dict]) -> dict:
    """{"reward": (first 10%, last 10%), "<name>": (...), ...} over the logged steps (means; None when absent)."""
    steps = step_rows(rows)
    if not steps:
        return {}
    k = max(1, len(steps) // 10)
    keys = ["reward"]
    for r in steps:
        keys += [key for key in r if key not in keys and key.startswith("rewards/") and key.endswith("/mean")
                 and key.count("/") == 2]
    out = {}
    for key in keys:
        name = key if key == "reward" else key.split("/")[1]
        out[name] = (_mean(r.get(key) for r in steps[:k]), _mean(r.get(key) for r in steps[-k:]))
    return out


def wandb_offline_dir(run_dir: Path) -> Path | None:
    found = sorted(Path(run_dir).glob("wandb/offline-run-*"))
    return found[-1] if found else None


def checkpoint_of(run_dir: Path, manifest: dict) -> str | None:
    if manifest.get("checkpoint"):
        return str(manifest["checkpoint"])
    from r1exp.records.resume import last_checkpoint

    found = last_checkpoint(run_dir)
    return str(found) if found else None


def run_summary(run_dir: Path, manifest: dict) -> tuple[str, list[tuple[str, str]]]:
    """The title and (label, text) lines of a run's closing summary."""
    run_dir = Path(run_dir)
    status, code = manifest.get("status", "unknown"), manifest.get("exit_code")
    rows = read_metrics(run_dir)
    steps = step_rows(rows)
    phases = manifest.get("phases") or {}
    lines: list[tuple[str, str]] = [("folder", str(run_dir))]
    if status != "ok":
        lines += _what_failed(run_dir, manifest, phases)
    if phases:
        split = ", ".join(f"{p} {phases[p]:.1f}" for p in PHASES if p in phases)
        lines.append(("wall time", f"{phases.get('total', 0):.1f} s ({split})"))
    total = ((manifest.get("config") or {}).get("trainer") or {}).get("max_steps")
    if steps:
        k = max(1, len(steps) // 10)
        lines.append(("steps", f"{steps[-1]['step']}" + (f" of {total}" if total and total > 0 else "")
                      + f" (rewards: mean of the first {k} -> the last {k})"))
        for name, (first, last) in reward_trends(rows).items():
            lines.append((name if name == "reward" else f"  {name}", f"{fmt(first)} -> {fmt(last)}  ({_signed(first, last)})"))
    elif status == "ok":
        lines.append(("steps", "none logged"))
    held = held_out(manifest)
    if held is not None:
        lines.append(("held-out", held_out_line(held, status)))
    memory = _memory(manifest)
    if memory:
        lines.append(("GPU memory", memory))
    kernels = _kernels(manifest)
    if kernels:
        lines.append(("GPU kernels", kernels))
    curve = run_dir / tracking.CURVE_FILE
    if curve.exists():
        lines.append(("reward curve", str(curve)))
    lines += _next_steps(run_dir, manifest, status)
    return f"run {status} (exit {code})", lines


def _what_failed(run_dir: Path, manifest: dict, phases: dict) -> list[tuple[str, str]]:
    status, code = manifest.get("status"), manifest.get("exit_code")
    out = []
    if status == "interrupted":
        out.append(("stopped", f"by a signal (exit {code}) during {phases.get('last', 'the run')}"))
    else:
        error = (manifest.get("error") or "no error recorded").strip().splitlines()
        where = f" during {phases['last']}" if phases.get("last") else ""
        kind = "configuration problem (the full message is above)" if code == 2 else "error"
        out.append(("failed", f"{kind}{where}: {error[0] if error else ''}"))
    if (run_dir / ERROR_FILE).exists():
        out.append(("traceback", str(run_dir / ERROR_FILE)))
    checkpoint = checkpoint_of(run_dir, manifest)
    out.append(("checkpoint", checkpoint or "none (no step was saved)"))
    return out


def _next_steps(run_dir: Path, manifest: dict, status: str) -> list[tuple[str, str]]:
    out = []
    logger = ((manifest.get("config") or {}).get("logger") or {}).get("name")
    offline = wandb_offline_dir(run_dir)
    if manifest.get("wandb_url"):
        out.append(("W&B", str(manifest["wandb_url"])))
    elif offline is not None:
        out.append(("W&B (offline)", f"wandb sync {offline}"))
    elif logger and logger != "wandb":
        out.append(("W&B", f"off (logger={logger})"))
    if status in ("interrupted", "failed") and checkpoint_of(run_dir, manifest):
        out.append(("resume", f"python -m r1exp.reproduce {run_dir} resume=true"))
    out.append(("reproduce" if status == "ok" else "run again", f"python -m r1exp.reproduce {run_dir}"))
    return out


KERNELS_WORTH_A_LINE = 5   # a run that compiled this many kernels started with a cold cache


def _kernels(manifest: dict) -> str | None:
    """The kernels a start compiled, when it compiled enough to have cost it (r1exp/machine/kernel_cache.py)."""
    startup = manifest.get("startup") or {}
    compiled = startup.get("kernels_compiled")
    if not isinstance(compiled, int) or compiled < KERNELS_WORTH_A_LINE:
        return None
    return (f"{compiled} compiled into {startup.get('kernel_cache_dir')} (a first run with this cache: later runs "
            "reuse them; hardware.kernel_cache=FOLDER keeps them where a new machine finds them)")


def _memory(manifest: dict) -> str | None:
    measured = (manifest.get("gpu_memory") or {}).get("gpu/peak_used_gb")
    if not isinstance(measured, (int, float)):
        return None
    planned = (manifest.get("plan") or {}).get("total_gb")
    text = f"peak {measured:.1f} GiB"
    if isinstance(planned, (int, float)) and planned > 0:
        text += f", planned {planned:.1f} GiB ({100 * (measured - planned) / planned:+.0f}%)"
    return text


# --- the held-out evaluation (run.json "eval") ---------------------------------------------------------------------

MALFORMED = "?"          # how every reader shows an eval block it cannot make sense of
HELD_OUT_KEY = "pass@1"  # the headline number: the share of held-out prompts answered right


@dataclass
class HeldOut:
    """A run's held-out evaluation, read leniently. `baseline` (before training) and `final` (after) are None when
    that evaluation did not run (switched off, or the run ended first); `problem` says why the block could not be
    read (a run.json edited by hand, or written by another version), and then nothing else is trusted."""
    baseline: dict | None = None
    final: dict | None = None
    steps: list = field(default_factory=list)
    set: dict = field(default_factory=dict)
    problem: str | None = None

    @property
    def k(self) -> int | None:
        k = self.set.get("k")
        return k if isinstance(k, int) and not isinstance(k, bool) else None

    @property
    def prompts(self) -> int | None:
        for source in (self.set, self.final or {}, self.baseline or {}):
            n = source.get("prompts")
            if isinstance(n, int) and not isinstance(n, bool):
                return n
        return None

    def sample_metrics(self) -> list[str]:
        """pass@k and maj@k for k > 1, as the evaluation logged them (absent when it drew one sample per prompt)."""
        names: list[str] = []
        for point in (self.baseline, self.final, *self.steps):
            names += [key for key in (point or {}) if _is_sample_metric(key) and key != HELD_OUT_KEY
                      and key not in names and number(point[key]) is not None]
        return sorted(names, key=lambda key: (not key.startswith("pass@"), key))

    def after(self) -> tuple[dict | None, str]:
        """The point to compare the baseline with: the final evaluation, else the last one during training (a run
        that failed, or whose final evaluation was off), with a note that says which."""
        if self.final is not None:
            return self.final, ""
        later = [p for p in self.steps if self.baseline is None or _step(p) > _step(self.baseline)]
        if later:
            return later[-1], f"the second number is step {_step(later[-1])}'s evaluation (there is no final one)"
        return None, ""


def held_out(manifest: dict) -> HeldOut | None:
    """The run's held-out evaluation; None for a run without one (made before r1exp evaluated, or with it off)."""
    block = manifest.get("eval") if isinstance(manifest, dict) else None
    if block is None:
        return None
    if not isinstance(block, dict):
        return HeldOut(problem=f"'eval' is a {type(block).__name__}, not an object")
    if not isinstance(block.get("set") or {}, dict):
        return HeldOut(problem="'eval.set' is not an object")
    out = HeldOut(set=block.get("set") or {})
    for name in ("baseline", "final"):
        point = block.get(name)
        if point is not None and not _is_point(point):
            return HeldOut(problem=f"'eval.{name}' has no number {HELD_OUT_KEY}")
        setattr(out, name, point)
    steps = block.get("steps") or []
    if not isinstance(steps, list) or not all(_is_point(p) for p in steps):
        return HeldOut(problem=f"'eval.steps' is not a list of evaluations with a number {HELD_OUT_KEY}")
    out.steps = sorted(steps, key=_step)
    return out


def held_out_trend(held: HeldOut | None) -> str:
    """`pass@1 0.22 -> 0.91` (baseline -> final); the one that ran, named, when only one did; `-` without an
    evaluation; `?` when the block cannot be read."""
    if held is None:
        return "-"
    if held.problem:
        return MALFORMED
    before, after = (number((p or {}).get(HELD_OUT_KEY)) for p in (held.baseline, held.final))
    if before is not None and after is not None:
        return f"{HELD_OUT_KEY} {before:.2f} -> {after:.2f}"
    if before is None and after is None:
        return "-"
    return f"{HELD_OUT_KEY} {before:.2f} (baseline)" if after is None else f"{HELD_OUT_KEY} {after:.2f} (final)"


def held_out_line(held: HeldOut, status: str = "ok") -> str:
    """The closing summary's line: `pass@1 0.22 -> 0.91 (+0.69) on 64 prompts (k=4: pass@4 0.41 -> 0.97, ...)`."""
    if held.problem:
        return f"{MALFORMED} (run.json's eval block cannot be read: {held.problem})"
    before, (after, note) = held.baseline, held.after()
    if before is None and after is None:
        return ("none ran (the run ended before its first evaluation)" if status != "ok"
                else "none ran (the baseline and final evaluations were off)")
    text = f"{HELD_OUT_KEY} {_pair(before, after, HELD_OUT_KEY, change=True)}"
    if held.prompts is not None:
        text += f" on {held.prompts} prompts"
    sampled = [f"{key} {_pair(before, after, key)}" for key in held.sample_metrics()]
    if sampled:
        text += f" (k={held.k if held.k is not None else '?'}: {', '.join(sampled)})"
    notes = [note] if note else []
    if after is None:
        notes.append("before training only (no final evaluation)")
    elif before is None:
        notes.append("no baseline")
    return text + (f"; {'; '.join(notes)}" if notes else "")


def held_out_points(rows: list[dict], held: HeldOut | None, key: str = HELD_OUT_KEY) -> list[tuple[int, float]]:
    """(step, value) of every held-out evaluation: metrics.jsonl's eval/ rows, else run.json's eval block."""
    points = {r["step"]: number(r[f"eval/{key}"]) for r in rows   # the training row of that step comes apart
              if isinstance(r.get("step"), int) and number(r.get(f"eval/{key}")) is not None}
    if not points and held is not None and not held.problem:
        for point in (held.baseline, *held.steps, held.final):
            if point is not None and number(point.get(key)) is not None:
                points[_step(point)] = number(point[key])
    return sorted(points.items())


def held_out_set(held: HeldOut | None) -> str:
    """What the run was evaluated on, in one line: where the prompts came from, how many, k and the sampling."""
    if held is None:
        return "-"
    if held.problem:
        return MALFORMED
    s = held.set
    parts = [str(s["source"])] if s.get("source") else []
    if held.prompts is not None:
        parts.append(f"{held.prompts} prompts")
    parts += [f"{key}={s[key]}" for key in ("k", "temperature", "max_tokens") if key in s]
    return ", ".join(parts) or "-"


def same_set(a: HeldOut, b: HeldOut) -> bool:
    """Whether two runs were evaluated on the same prompts the same way: their numbers compare only then."""
    return json.dumps(a.set, sort_keys=True, default=str) == json.dumps(b.set, sort_keys=True, default=str)


def number(v) -> float | None:
    """A finite number of a JSON value, else None (True is not a number here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _is_point(point) -> bool:
    return isinstance(point, dict) and number(point.get(HELD_OUT_KEY)) is not None


def _is_sample_metric(key: str) -> bool:
    head, at, k = str(key).partition("@")
    return bool(at) and head in ("pass", "maj") and k.isdigit()


def _step(point: dict) -> int:
    step = point.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else 0


def _pair(before: dict | None, after: dict | None, key: str, change: bool = False) -> str:
    """`0.22 -> 0.91 (+0.69)`, or the one side that exists."""
    a, b = number((before or {}).get(key)), number((after or {}).get(key))
    if a is None or b is None:
        return "-" if a is None and b is None else f"{a if b is None else b:.2f}"
    return f"{a:.2f} -> {b:.2f}" + (f" ({b - a:+.2f})" if change else "")


# --- printing ------------------------------------------------------------------------------------------------------

def print_run_summary(run_dir: Path, manifest: dict, console=None) -> None:
    """Print the closing summary and append it to train.log. Never raises: a run's end must not fail here."""
    try:
        from r1exp.observe.live import close_all

        close_all()   # the live view leaves the screen to the summary (it is still up when training failed)
        title, lines = run_summary(run_dir, manifest)
        good = manifest.get("status") == "ok"
        print_block(title, lines, "green" if good else "red", console)
        _append(Path(run_dir) / "train.log", title, lines)
    except Exception as e:  # noqa: BLE001 - a summary is a courtesy; run.json has the facts
        print(f"(no closing summary: {type(e).__name__}: {e}; see {Path(run_dir) / 'run.json'})", flush=True)






def print_block(title: str, lines: list[tuple[str, str]], color: str, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    width = max(len(label) for label, _ in lines) if lines else 0
    console.print()
    console.rule(f"[bold {color}]{escape(title)}[/]", align="left")
    for label, text in lines:
        # soft_wrap: long paths and commands stay on one line, so they can be copied
        console.print(f"[bold]{escape(label.ljust(width))}[/]  {escape(text)}", soft_wrap=True, highlight=False)


def _append(path: Path, title: str, lines: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in lines) if lines else 0
    with contextlib.suppress(OSError), path.open("a") as f:   # a full disk: the console has the summary
        f.write(f"--- {title}\n" + "".join(f"{label.ljust(width)}  {text}\n" for label, text in lines))


def _process_age() -> float | None:
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - psutil comes with accelerate; without it the start-up is not counted
        return None


def _mean(values) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _signed(first, last) -> str:
    return "-" if first is None or last is None else f"{last - first:+.3f}"
