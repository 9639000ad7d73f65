"""The runs you have, and how two or more of them differ.

    python -m r1exp.runs [ROOT]                      # every run and sweep under ROOT (default outputs/)
    python -m r1exp.runs compare RUN RUN... [-o PNG] # config diff + their reward curves in one PNG

The list shows each run's status, name, date, its overrides (.hydra/overrides.yaml, without hydra.*), the
reward of its first 10% of steps -> its last 10%, and its held-out pass@1 before -> after training (run.json
"eval"; `-` without one, `?` when that block cannot be read); a sweep also gets a row with its jobs and best job. A
folder whose run.json cannot be read is listed as unreadable. `compare` prints the keys of the resolved configs
(run.json) that differ, each run's status and reward, the runs' held-out evaluations (what they were evaluated on,
baseline, final and change of pass@1, pass@k, maj@k) when any has one, and draws every run's reward curve (total
and per reward) and held-out pass@1 into one PNG, written next to the first run (in the folder that holds it: the
day's runs, or the sweep) as reward_compare_<run>_vs_<run>.png, or to `-o PNG`; it prints the PNG's full path. A
path that is not a run folder, or a run.json cut short, is reported with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


from r1exp.observe.summary import (HELD_OUT_KEY, HeldOut, MALFORMED, held_out, held_out_points, held_out_set,
                                   held_out_trend, number, same_set)
from r1exp.records.metrics import read_metrics, step_rows
from r1exp.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from r1exp.records.manifest import MANIFEST_FILE

DEFAULT_ROOT = Path("outputs")
PNG_PREFIX = "reward_compare_"     # compare's PNG, next to the first run: reward_compare_<run>_vs_<run>.png
PNG_NAME_MAX = 160
SKIP_DIRS = {"wandb", "adapter", "trainer", ".hydra", "__pycache__"}


class BadRun(Exception):
    """A path given on the command line that is not a readable run folder (message says why and what to do)."""


@dataclass
class Run:
    folder: Path
    manifest: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)
    problem: str | None = None        # why run.json could not be read

    @property
    def status(self) -> str:
        if self.problem:
            return "unreadable"
        status = self.manifest.get("status", "unknown")
        if status != "running":
            return status
        from r1exp.records.manifest import run_state

        return run_state(self.folder)   # running while its process lives (pid, heartbeat), else dead

    @property
    def name(self) -> str:
        return str((self.manifest.get("config") or {}).get("name") or self.folder.name)

    @property
    def date(self) -> str:
        start = self.manifest.get("start")
        if not start:
            return ""
        try:
            return datetime.fromisoformat(start).astimezone().strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return str(start)

    def rows(self) -> list[dict]:
        return step_rows(self.logged())

    def logged(self) -> list[dict]:
        """Every line of metrics.jsonl: the training steps, and the held-out evaluations (eval/* rows)."""
        return read_metrics(self.folder) if (self.folder / "metrics.jsonl").exists() else []

    @property
    def held(self) -> HeldOut | None:
        return None if self.problem else held_out(self.manifest)

    def reward(self) -> tuple[float | None, float | None]:
        m = self.manifest.get("metrics") or {}
        if isinstance(m.get("reward_first10"), (int, float)):
            return m["reward_first10"], m.get("reward_last10")
        from r1exp.observe.summary import reward_trends

        return reward_trends(self.rows()).get("reward", (None, None))


def load_run(folder: Path) -> Run:
    """A run folder, read leniently: a run.json that cannot be parsed gives a Run with `problem` set."""
    folder = Path(folder)
    run = Run(folder, overrides=saved_overrides(folder))
    path = folder / MANIFEST_FILE
    if not path.exists():
        run.problem = "no run.json (the job stopped before r1exp started; see its log)"
        return run
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        run.manifest = data
    except (ValueError, OSError) as e:
        run.problem = f"run.json cannot be read ({e}): the process was likely killed while writing it"
    return run


def open_run(arg: str) -> Run:
    """A run folder named on the command line, or BadRun with the reason and the fix."""
    folder = Path(arg)
    if not folder.exists():
        raise BadRun(f"{arg}: no such folder. List the runs with: python -m r1exp.runs")
    if not folder.is_dir():
        raise BadRun(f"{arg}: not a folder; give a run folder (outputs/runs/<date>/<time>_<name>/)")
    if not (folder / MANIFEST_FILE).exists():
        if (folder / "multirun.yaml").exists():
            jobs = " ".join(str(p) for p in sorted(job_folders(folder))[:3]) or f"{arg}/0 {arg}/1"
            raise BadRun(f"{arg}: a sweep folder, not a run; compare its jobs ({jobs} ...) or read "
                         f"{folder / 'summary.md'}")
        raise BadRun(f"{arg}: not a run folder (no {MANIFEST_FILE}); run folders are outputs/runs/<date>/<time>_<name>/ "
                     "and outputs/sweeps/<date>/<time>_<name>/<n>/. List them with: python -m r1exp.runs")
    run = load_run(folder)
    if run.problem:
        raise BadRun(f"{arg}: {run.problem}")
    return run


def saved_overrides(folder: Path) -> list[str]:
    """The command-line overrides Hydra saved for the run, without hydra.* (where the folder went)."""
    path = Path(folder) / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    try:
        import yaml

        items = yaml.safe_load(path.read_text()) or []
    except Exception:  # noqa: BLE001 - a damaged overrides file: the list shows none
        return []
    return [_as_typed(str(o)) for o in items if not str(o).lstrip("+~").startswith("hydra.")]


def _as_typed(override: str) -> str:
    """`key=False` as a user types it (`key=false`): Hydra's sweeper renders swept booleans the Python way."""
    key, eq, value = override.partition("=")
    return f"{key}={value.lower()}" if eq and value in ("True", "False") else override


def job_folders(sweep: Path) -> list[Path]:
    return [p for p in Path(sweep).iterdir() if p.is_dir() and ((p / MANIFEST_FILE).exists() or (p / ".hydra").is_dir())]


def find_runs(root: Path) -> tuple[list[Run], list[Path]]:
    """Every run folder (run.json or .hydra/) under root, and every sweep folder (multirun.yaml), by path."""
    runs, sweeps = [], []
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            continue
        if (folder / "multirun.yaml").exists():
            sweeps.append(folder)
        if (folder / MANIFEST_FILE).exists() or (folder / ".hydra").is_dir():
            runs.append(load_run(folder))
            continue   # a run's own subfolders (adapter/, trainer/, wandb/) hold no runs
        stack += [c for c in children if c.name not in SKIP_DIRS]
    return sorted(runs, key=lambda r: _path_key(r.folder)), sorted(sweeps)


# --- list ----------------------------------------------------------------------------------------------------------

def list_runs(root: Path, console=None) -> int:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not root.exists():
        _error(f"{root}: no such folder. Runs are written to outputs/ in the folder you run `python -m r1exp` "
               "from; give that folder: python -m r1exp.runs PATH/outputs")
        return EXIT_USAGE
    if not root.is_dir():
        _error(f"{root}: not a folder; give the folder that holds the runs (outputs/)")
        return EXIT_USAGE
    runs, sweeps = find_runs(root)
    if not runs and not sweeps:
        console.print(f"no runs under {root} (start one with: python -m r1exp)", markup=False, soft_wrap=True)
        return EXIT_OK
    table = Table(title=f"runs under {root}", title_justify="left", show_lines=False)
    for column in ("status", "name", "date", "overrides", "reward first -> last", "held-out", "folder"):
        table.add_column(column, overflow="fold")
    for run in runs:
        first, last = run.reward() if not run.problem else (None, None)
        table.add_row(_status(run.status), run.name, run.date, " ".join(run.overrides) or "-",
                      _trend(first, last) if not run.problem else run.problem, held_out_trend(run.held),
                      _rel(run.folder, root))
    console.print(table)
    for sweep in sweeps:
        console.print(_sweep_line(sweep, root), markup=False, soft_wrap=True)
    console.print("compare runs: python -m r1exp.runs compare RUN RUN ...", markup=False, soft_wrap=True)
    return EXIT_OK


def _sweep_line(sweep: Path, root: Path) -> str:
    from r1exp.scale.sweep import best_job, collect_jobs, ranking

    jobs = collect_jobs(sweep)
    ok = sum(job.ok for job in jobs)
    metric, _ = ranking(jobs)   # the held-out pass@1 when a job has one, else the training reward
    best = best_job(jobs, metric)
    text = f"sweep {_rel(sweep, root)}: {ok}/{len(jobs)} jobs ok"
    if best is not None:
        text += f", best job {best.num} ({' '.join(best.overrides)}) {metric} {best.value(metric):.3f}"
    if (sweep / "summary.md").exists():
        text += f"; {_rel(sweep / 'summary.md', root)}"
    return text


# --- compare -------------------------------------------------------------------------------------------------------

def flatten(tree, prefix: str = "") -> dict:
    """{'trainer.learning_rate': 0.001, ...}; lists are values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return out


_MISSING = "(absent)"


def config_diff(runs: list[Run]) -> dict:
    """{key: [value per run]} for the config keys whose values differ between the runs."""
    flats = [flatten(run.manifest.get("config") or {}) for run in runs]
    keys = sorted({k for f in flats for k in f})
    return {k: [f.get(k, _MISSING) for f in flats] for k in keys
            if len({json.dumps(f.get(k, _MISSING), sort_keys=True, default=str) for f in flats}) > 1}


def compare(args: list[str], out: Path | None = None, console=None) -> int:
    """The config diff and status table; the reward curves into `out` (default: default_png, next to the first run)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    try:
        runs = [open_run(a) for a in args]
    except BadRun as e:
        _error(str(e))
        return EXIT_USAGE
    labels = _labels(runs)
    diff = config_diff(runs)
    table = Table(title="config differences" if diff else "the configs are the same", title_justify="left")
    table.add_column("key", overflow="fold")
    for label in labels:
        table.add_column(label, overflow="fold")
    for key, values in diff.items():
        table.add_row(key, *(_value(v) for v in values))
    table.add_section()
    table.add_row("[bold]status", *(_status(r.status) for r in runs))
    table.add_row("[bold]reward first -> last", *(_trend(*r.reward()) for r in runs))
    console.print(table)
    held = [r.held for r in runs]
    if any(h is not None for h in held):
        console.print(held_out_table(held, labels))
        readable = [h for h in held if h is not None and not h.problem]
        if any(not same_set(readable[0], h) for h in readable[1:]):
            console.print("note: the runs were evaluated on different held-out sets (the set row): their numbers "
                          "are not directly comparable", markup=False, soft_wrap=True)
    out = Path(out).resolve() if out is not None else default_png(runs, labels)
    try:
        png = plot_curves(runs, labels, out)
    except OSError as e:
        _error(f"cannot write the reward curves to {out}: {e.strerror or e}; choose the file with -o PATH.png")
        return EXIT_RUNTIME
    if png:
        console.print(f"reward curves: {png}", markup=False, soft_wrap=True)
    else:
        console.print("no reward curves: none of these runs logged a step", markup=False)
    return EXIT_OK


def held_out_table(held: list[HeldOut | None], labels: list[str]):
    """Each run's held-out evaluation side by side: the set, then baseline, final and change of every number."""
    from rich.table import Table

    table = Table(title="held-out evaluation (run.json eval)", title_justify="left")
    table.add_column("", overflow="fold")
    for label in labels:
        table.add_column(label, overflow="fold")
    table.add_row("[bold]set", *(_value(held_out_set(h)) for h in held))
    names = [HELD_OUT_KEY]
    for h in held:
        names += [k for k in (h.sample_metrics() if h is not None and not h.problem else []) if k not in names]
    for name in names:
        table.add_section()
        for point in ("baseline", "final", "change"):
            table.add_row(f"[bold]{name}[/] {point}", *(_held_out_cell(h, name, point) for h in held))
    return table


def _held_out_cell(held: HeldOut | None, name: str, point: str) -> str:
    """`0.22`, the change `+0.69`, `-` where that evaluation did not run, `?` where the block cannot be read."""
    if held is None:
        return "-"
    if held.problem:
        return MALFORMED
    before, after = (number((p or {}).get(name)) for p in (held.baseline, held.final))
    if point == "change":
        return "-" if before is None or after is None else f"{after - before:+.2f}"
    value = before if point == "baseline" else after
    return "-" if value is None else f"{value:.2f}"


def default_png(runs: list[Run], labels: list[str] | None = None) -> Path:
    """Next to the first run (in the folder that holds it), named after the runs: never the current folder."""
    names = [re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") for label in (labels or _labels(runs))]
    stem = "_vs_".join(names)
    if len(stem) > PNG_NAME_MAX:   # many runs: the first one's name and how many others
        stem = f"{names[0]}_vs_{len(names) - 1}_runs"
    return runs[0].folder.resolve().parent / f"{PNG_PREFIX}{stem}.png"


def plot_curves(runs: list[Run], labels: list[str], out: Path) -> Path | None:
    """Total reward per run (left), each reward's mean per run (middle) and, when a run has a held-out evaluation,
    its pass@1 at each evaluation (right), in one PNG."""
    curves = []
    for i, (run, label) in enumerate(zip(runs, labels)):
        logged = run.logged()
        curves.append((f"C{i % 10}", label, step_rows(logged), held_out_points(logged, run.held)))
    curves = [curve for curve in curves if curve[2] or curve[3]]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = any(points for *_, points in curves)
    fig, axes = plt.subplots(1, 3 if held else 2, figsize=(18 if held else 12, 4.5), sharex=True)
    total, each = axes[0], axes[1]
    styles = ["-", "--", ":", "-."]
    for color, label, rows, points in curves:
        xs = [r["step"] for r in rows]
        total.plot(xs, [_nan(r.get("reward")) for r in rows], color=color, label=label)
        names = [k for k in (rows[0] if rows else {}) if k.startswith("rewards/") and k.endswith("/mean")
                 and k.count("/") == 2]
        for j, key in enumerate(names):
            each.plot(xs, [_nan(r.get(key)) for r in rows], color=color, linestyle=styles[j % len(styles)],
                      label=f"{label}: {key.split('/')[1]}")
        if points:
            axes[2].plot(*zip(*points), color=color, marker="D", label=label)
    total.set_title("reward (weighted sum)")
    each.set_title("each reward's mean")
    if held:
        axes[2].set_title(f"held-out {HELD_OUT_KEY} (step 0: before training)")
        axes[2].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# --- command line --------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        parser = argparse.ArgumentParser(prog="python -m r1exp.runs compare",
                                         description="Config diff and reward curves of two or more runs.")
        parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (run.json inside)")
        parser.add_argument("-o", "--out", default=None, help="the PNG to write (default: next to the first run, "
                            f"{PNG_PREFIX}<run>_vs_<run>.png in the folder that holds it)")
        args = parser.parse_args(argv[1:])   # a usage error exits 2 with the usage line
        if len(args.runs) < 2:
            parser.error("give at least two run folders")
        return compare(args.runs, Path(args.out) if args.out else None)
    parser = argparse.ArgumentParser(prog="python -m r1exp.runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=str(DEFAULT_ROOT), help="folder to search (default outputs/)")
    args = parser.parse_args(argv)
    return list_runs(Path(args.root))


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _labels(runs: list[Run]) -> list[str]:
    """Short names: the folder name, with the parent's when two share one (sweep jobs 0, 1, ...)."""
    names = [r.folder.name for r in runs]
    labels = [f"{r.folder.parent.name}/{r.folder.name}" if names.count(r.folder.name) > 1 or r.folder.name.isdigit()
              else r.folder.name for r in runs]
    return [f"{label} ({i + 1})" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _status(status: str) -> str:
    color = {"ok": "green", "failed": "red", "interrupted": "yellow"}.get(status, "magenta")
    return f"[{color}]{status}[/]"


def _trend(first, last) -> str:
    if first is None or last is None:
        return "-"
    return f"{first:.2f} -> {last:.2f}"


def _value(v) -> str:
    from rich.markup import escape

    return escape(v if isinstance(v, str) else json.dumps(v, default=str))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _path_key(path: Path) -> tuple:
    """Folder order with sweep jobs by number (2 before 10)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def _nan(v) -> float:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan


if __name__ == "__main__":
    sys.exit(main())
