"""Sweeps end in a comparison: when a multirun ends, summary.md, summary.csv and summary.png go into its folder.

`SweepSummary` is a Hydra callback (conf/config.yaml, hydra.callbacks). It reads every job folder of the sweep,
so it works the same for jobs run in this process (basic launcher) and in others (submitit, SLURM):
- a table of every job: its overrides (one column per swept key), status, exit code, final metrics and folder;
  failed jobs are listed as failed with their error, they do not stop the others;
- the reward curves of all jobs in one plot;
- the exit status of the whole sweep (0 when every job ended ok, else the worst job's), for `python -m r1exp -m`.

A job stopped by SIGTERM or Ctrl-C (it saved a checkpoint, see r1exp.records.resume) stops the sweep: the jobs after it do
not start, and the summary of what ran is written all the same.

Ready sweeps live in sweeps/ (see sweeps/README.md). For an Optuna search the sweep config names the metric to
optimise (`objective: reward_last10`) and each job returns that metric to the sweeper (`job_value`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from hydra.experimental.callback import Callback

from r1exp.observe.summary import fmt, print_block
from r1exp.records import secrets
from r1exp.records.metrics import read_metrics, step_rows
from r1exp.records.manifest import MANIFEST_FILE, read_manifest

SUMMARY_MD, SUMMARY_CSV, SUMMARY_PNG = "summary.md", "summary.csv", "summary.png"
# Final metrics shown in the markdown table (the csv has all of them).
TABLE_METRICS = ("steps_logged", "reward_first10", "reward_last10", "final/reward", "final/loss", "train_runtime_s")
# Where each job's step time went (r1exp.observe.timing): mean seconds per step after the first, and its phases.
TIME_COLUMNS = (("time_mean/step", "s/step"), ("time_mean/generation", "gen"), ("time_mean/weight_sync", "sync"),
                ("time_mean/logprobs", "logp"), ("time_mean/backward_optimizer", "train"),
                ("time_mean/rewards", "reward"), ("time_mean/other", "other"))
_last: dict = {"exit_code": None, "sweep_dir": None}


@dataclass
class Job:
    num: int
    folder: Path
    overrides: list = field(default_factory=list)
    status: str = "not started"
    exit_code: int | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def override_map(self) -> dict:
        return dict(o.lstrip("+~").split("=", 1) for o in self.overrides if "=" in o)


def collect_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder of a sweep (a folder with .hydra/ or run.json), in job order."""
    jobs = []
    for folder in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ((folder / ".hydra").is_dir() or (folder / MANIFEST_FILE).exists()):
            continue
        jobs.append(_job(folder))
    return sorted(jobs, key=lambda j: (j.num, j.folder.name))


def _job(folder: Path) -> Job:
    overrides = _saved_overrides(folder)
    num = int(folder.name) if folder.name.isdigit() else 10**6
    if not (folder / MANIFEST_FILE).exists():
        return Job(num, folder, overrides, error="the job ended before r1exp started (see its log)")
    m = read_manifest(folder)
    status = m.get("status", "failed")
    if status == "running":  # the sweep is over: the job's process died without saying how
        status = "crashed"
    num = (m.get("hydra") or {}).get("job_num", num)
    error = "; ".join(line.strip() for line in (m.get("error") or "").strip().splitlines()[:2])  # problem + why
    return Job(int(num), folder, overrides or (m.get("hydra") or {}).get("overrides", []), status,
               m.get("exit_code"), m.get("metrics") or {}, error or None)


def _saved_overrides(folder: Path) -> list:
    path = folder / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def swept_keys(jobs: list[Job]) -> list[str]:
    """The override keys whose value differs between jobs, in command-line order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.override_map() if k not in keys]
    return [k for k in keys if len({job.override_map().get(k) for job in jobs}) > 1]


def exit_status(jobs: list[Job]) -> int:
    """0 when every job ended ok, else the largest exit code (1 for a job that died without one)."""
    bad = [job.exit_code if job.exit_code not in (None, 0) else 1 for job in jobs if not job.ok]
    return max(bad) if bad else (0 if jobs else 1)


def best_job(jobs: list[Job], metric: str = "reward_last10", maximize: bool = True) -> Job | None:
    scored = [j for j in jobs if j.ok and isinstance(j.metrics.get(metric), (int, float))]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda j: j.metrics[metric])


def write_summary(sweep_dir: Path, jobs: list[Job], metric: str = "reward_last10", maximize: bool = True) -> dict:
    """summary.md, summary.csv and summary.png in sweep_dir; the paths written."""
    sweep_dir = Path(sweep_dir)
    keys = swept_keys(jobs)
    out = {"md": sweep_dir / SUMMARY_MD, "csv": sweep_dir / SUMMARY_CSV}
    _write_csv(out["csv"], jobs, keys)
    out["md"].write_text(_markdown(sweep_dir, jobs, keys, metric, maximize))
    png = _plot(sweep_dir / SUMMARY_PNG, jobs, keys)
    if png:
        out["png"] = png
    return out


def _write_csv(path: Path, jobs: list[Job], keys: list[str]) -> None:
    metric_names = sorted({k for job in jobs for k in job.metrics})
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", *keys, "status", "exit_code", *metric_names, "overrides", "error", "folder"])
        for job in jobs:
            swept = job.override_map()
            writer.writerow([job.num, *(swept.get(k, "") for k in keys), job.status, job.exit_code,
                             *(job.metrics.get(m, "") for m in metric_names), " ".join(job.overrides),
                             job.error or "", job.folder.name])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _markdown(sweep_dir: Path, jobs: list[Job], keys: list[str], metric: str, maximize: bool) -> str:
    ok = sum(job.ok for job in jobs)
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{len(jobs)} jobs: {ok} ok, {len(jobs) - ok} not ok. Folder: `{sweep_dir}`.", ""]
    best = best_job(jobs, metric, maximize)
    if best is not None:
        lines += [f"Best by {metric} ({'highest' if maximize else 'lowest'}): job {best.num} "
                  f"({' '.join(f'{k}={best.override_map().get(k)}' for k in keys) or 'the only setting'}), "
                  f"{metric} = {_fmt(best.metrics[metric])}.", ""]
    metrics = [m for m in TABLE_METRICS if any(m in job.metrics for job in jobs)]
    times = [(m, short) for m, short in TIME_COLUMNS if any(m in job.metrics for job in jobs)]
    header = ["job", *keys, "status", *metrics, *(short for _, short in times), "folder"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        swept = job.override_map()
        cells = [str(job.num), *(swept.get(k, "") for k in keys), job.status,
                 *(_fmt(job.metrics.get(m)) for m in metrics), *(_fmt(job.metrics.get(m)) for m, _ in times),
                 f"`{job.folder.name}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if times:
        lines += ["", "Time columns (r1exp.observe.timing; seconds per step, mean over the steps after the first): "
                  "`s/step` the whole step = `gen` generation + `sync` weight sync into the engine + `logp` "
                  "old/reference log-probs + `train` forward, backward and optimizer + `reward` rewards + `other` "
                  "the rest."]
    failed = [job for job in jobs if not job.ok]
    if failed:
        lines += ["", "## Not ok", ""]
        lines += [f"- job {job.num} ({' '.join(job.overrides)}): {job.status}, exit code {job.exit_code}: "
                  f"{job.error or 'no error recorded'}" for job in failed]
    lines += ["", f"Reward curves: `{SUMMARY_PNG}`. Every job's overrides and all final metrics: `{SUMMARY_CSV}`.",
              "Repeat one job: `python -m r1exp.reproduce <sweep folder>/<job>`.", ""]
    return "\n".join(lines)


def _plot(path: Path, jobs: list[Job], keys: list[str]) -> Path | None:
    curves = [(job, step_rows(read_metrics(job.folder))) for job in jobs]
    curves = [(job, rows) for job, rows in curves if rows]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for job, rows in curves:
        label = f"{job.num}: " + (" ".join(f"{k}={job.override_map().get(k)}" for k in keys) or "job")
        label += "" if job.ok else f" ({job.status})"
        ax.plot([r["step"] for r in rows], [r["reward"] for r in rows], "-" if job.ok else ":", marker="o",
                markersize=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward (weighted sum)")
    ax.set_title(f"sweep {path.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class SweepSummary(Callback):
    """Hydra callback: write the summary when a multirun ends and remember the sweep's exit status. Hydra saves
    the sweep's config (multirun.yaml) before the first job: secrets are taken out of it as each job starts."""

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            secrets.scrub_yaml(Path(HydraConfig.get().sweep.dir) / "multirun.yaml")

    def on_multirun_end(self, config, **kwargs) -> None:
        summarize(Path(config.hydra.sweep.dir), *_objective(config))


class SweepStopped(KeyboardInterrupt):
    """A job was stopped by a signal: the sweep ends there (the entry point catches it and calls summarize)."""

    def __init__(self, sweep_dir: Path):
        super().__init__(f"sweep {sweep_dir} stopped")
        self.sweep_dir = Path(sweep_dir)


def summarize(sweep_dir: Path, metric: str = "reward_last10", maximize: bool = True) -> int | None:
    """Write the summary of the jobs in sweep_dir; the sweep's exit status (None when there is no sweep folder)."""
    if not Path(sweep_dir).is_dir():
        return None
    secrets.scrub_yaml(Path(sweep_dir) / "multirun.yaml")
    jobs = collect_jobs(sweep_dir)
    paths = write_summary(sweep_dir, jobs, metric, maximize)
    _last.update(exit_code=exit_status(jobs), sweep_dir=Path(sweep_dir))

    print_sweep_summary(sweep_dir, jobs, paths, metric, maximize)  # jobs ok, the best job, where the summary is
    return _last["exit_code"]


def last_exit_code() -> int | None:
    """The exit status of the sweep this process ran last (None when no sweep ended here)."""
    return _last["exit_code"]


def _objective(config) -> tuple[str, bool]:
    metric = str(config.get("objective") or "reward_last10")
    direction = str(config.hydra.sweeper.get("direction", "maximize")) if "hydra" in config else "maximize"
    return metric, "min" not in direction


def job_value(cfg, code: int, run_dir: Path):
    """What a job returns to Hydra's sweeper: its exit status; for an Optuna search (`objective: <metric>` in the
    config) the metric from run.json, or the worst value when the job failed, so the search goes on.

    A job of a multirun stopped by a signal (exit status 128 + signal) raises SweepStopped instead."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    if code > 128 and hydra is not None and hydra.mode == RunMode.MULTIRUN:
        raise SweepStopped(Path(hydra.sweep.dir))
    metric = cfg.get("objective")
    if not metric:
        return code
    direction = str(hydra.sweeper.get("direction", "maximize")) if hydra is not None else "maximize"
    worst = math.inf if "min" in direction else -math.inf
    value = (read_manifest(run_dir).get("metrics") or {}).get(str(metric)) if code == 0 else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else worst


def sweep_summary(sweep_dir: Path, jobs: list, paths: dict, metric: str = "reward_last10",
                  maximize: bool = True) -> tuple[str, list[tuple[str, str]]]:

    ok = sum(job.ok for job in jobs)
    lines = [("folder", str(sweep_dir))]
    best = best_job(jobs, metric, maximize)
    if best is not None:
        keys = swept_keys(jobs)
        setting = " ".join(f"{k}={best.override_map().get(k)}" for k in keys) or "the only setting"
        lines.append(("best", f"job {best.num} ({setting}): {metric} {fmt(best.metrics[metric])}, {best.folder}"))
    for job in jobs:
        if not job.ok:
            lines.append((f"job {job.num}", f"{job.status}, exit {job.exit_code}: {job.error or 'no error recorded'}"))
    for key, label in (("md", "summary"), ("png", "curves"), ("csv", "table")):
        if key in paths:
            lines.append((label, str(paths[key])))
    return f"sweep: {ok}/{len(jobs)} jobs ok", lines


def print_sweep_summary(sweep_dir: Path, jobs: list, paths: dict, metric: str = "reward_last10",
                        maximize: bool = True, console=None) -> None:
    title, lines = sweep_summary(sweep_dir, jobs, paths, metric, maximize)
    print_block(title, lines, "green" if jobs and all(job.ok for job in jobs) else "red", console)
