"""How a run went, in a few lines at its end: the closing summary (and a sweep's).

`print_run_summary(run_dir, manifest)` is called by r1exp.run.run when a run ends, whatever the outcome:
status and exit code, wall time and its split (start-up, checks, build, train, save; `PhaseClock` measures them
and run.json keeps them under `phases`), the reward of the first 10% of steps -> the last 10%, overall and per
reward, peak GPU memory next to the plan (on a GPU), the run folder, the reward curve, and what to do next: sync
or open the W&B run, reproduce it. A failed or interrupted run says what failed and in which phase, where the
traceback (`error.txt`, `save_traceback`) and the checkpoint are, and the resume command. The same text goes to
the run's train.log. `print_sweep_summary` closes a multirun: jobs ok, the best job, the summary files.
"""

from __future__ import annotations

import math
import time
import traceback
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


def save_traceback(run_dir: Path) -> Path:
    """The exception being handled, with its traceback (secrets redacted), in <run_dir>/error.txt."""
    from r1exp.records.secrets import redact_text

    path = Path(run_dir) / ERROR_FILE
    path.write_text(redact_text(traceback.format_exc()))  # an error message may quote a key: kept out, as in run.json
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
    with path.open("a") as f:
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
