"""Sweeps end in a comparison: when a multirun ends, summary.md, summary.csv and summary.png go into its folder.

`SweepSummary` is a Hydra callback (conf/config.yaml, hydra.callbacks). It reads every job folder of the sweep,
so it works the same for jobs run in this process (basic launcher) and in others (submitit, SLURM):
- a table of every job: its overrides (one column per swept key), status, exit code, final metrics and folder;
  failed jobs are listed as failed with their error, they do not stop the others;
- the ranking: by the final held-out pass@1 (run.json `eval.final.pass@1`, `eval/pass@1`) when a job has one,
  because the training reward is measured on the prompts being trained on; else by the training reward
  (`reward_last10`); jobs without a held-out result rank after those with one. A sweep's `objective` wins;
- the reward curves of all jobs in one plot, and their held-out pass@1 when they have one;
- the exit status of the whole sweep (0 when every job ended ok, else the worst job's), for `python -m r1exp -m`.

A job stopped by SIGTERM or Ctrl-C (it saved a checkpoint, see r1exp.records.resume) stops the sweep: the jobs after it do
not start, and the summary of what ran is written all the same.

Ready sweeps live in sweeps/ (see sweeps/README.md). For an Optuna search the sweep config names the metric to
optimise (`objective: reward_last10`, or `eval/pass@1` for the final held-out pass@1) and each job returns that
metric to the sweeper (`job_value`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from hydra.experimental.callback import Callback

from r1exp.observe.summary import (HELD_OUT_KEY, MALFORMED, HeldOut, fmt, held_out, held_out_points, number,
                                   print_block)
from r1exp.records import secrets
from r1exp.records.metrics import read_metrics, step_rows
from r1exp.records.manifest import MANIFEST_FILE, read_manifest

SUMMARY_MD, SUMMARY_CSV, SUMMARY_PNG = "summary.md", "summary.csv", "summary.png"
TRAIN_METRIC = "reward_last10"     # the ranking without a held-out evaluation: the mean reward of the last 10% of steps
EVAL_PREFIX = "eval/"              # eval/<key>: <key> of the final held-out evaluation (run.json eval.final)
HELD_OUT_METRIC = EVAL_PREFIX + HELD_OUT_KEY
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
    held: HeldOut | None = None     # the held-out evaluation (run.json "eval"); None when the job has none

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, metric: str) -> float | None:
        return metric_value(self.metrics, self.held, metric)

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
               m.get("exit_code"), m.get("metrics") or {}, error or None, held_out(m))


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


def metric_value(metrics: dict, held: HeldOut | None, metric: str) -> float | None:
    """A job's value of `metric`: a key of run.json "metrics" (reward_last10, final/reward, ...), or `eval/<key>`,
    that key of the final held-out evaluation (eval/pass@1, eval/maj@4, ...); None when the job has none."""
    if metric.startswith(EVAL_PREFIX):
        final = held.final if held is not None and not held.problem else None
        return number((final or {}).get(metric[len(EVAL_PREFIX):]))
    return number(metrics.get(metric))


def ranking(jobs: list[Job], metric: str | None = None, maximize: bool = True) -> tuple[str, bool]:
    """What to rank by: the sweep's objective when it names one; else the final held-out pass@1 when any job that
    ended ok has one (the training reward rewards what the model was trained on), else the training reward."""
    if metric:
        return metric, maximize
    if any(job.ok and job.value(HELD_OUT_METRIC) is not None for job in jobs):
        return HELD_OUT_METRIC, True
    return TRAIN_METRIC, True


def ranks(jobs: list[Job], metric: str, maximize: bool = True) -> dict[Path, int]:
    """{job folder: rank, 1 the best}: the jobs ended ok by `metric`; when that is a held-out number, the ok jobs
    without one follow, by the training reward. Jobs not ok, or with neither value, get no rank."""
    tiers = [(metric, maximize)] + ([(TRAIN_METRIC, True)] if metric.startswith(EVAL_PREFIX) else [])
    keyed = []
    for job in jobs:
        for tier, (name, most) in enumerate(tiers):
            value = job.value(name) if job.ok else None
            if value is not None:   # ties in a held-out score go to the better training reward
                keyed.append(((tier, -value if most else value, -(job.value(TRAIN_METRIC) or 0.0), job.num),
                              job.folder))
                break
    return {folder: i + 1 for i, (_, folder) in enumerate(sorted(keyed))}


def best_job(jobs: list[Job], metric: str = TRAIN_METRIC, maximize: bool = True) -> Job | None:
    scored = [j for j in jobs if j.ok and j.value(metric) is not None]
    if not scored:
        return None
    sign = 1 if maximize else -1   # ties (a held-out pass@1 on a few prompts often ties) go to the training reward
    return max(scored, key=lambda j: (sign * j.value(metric), j.value(TRAIN_METRIC) or 0.0, -j.num))


def write_summary(sweep_dir: Path, jobs: list[Job], metric: str | None = None, maximize: bool = True) -> dict:
    """summary.md, summary.csv and summary.png in sweep_dir; the paths written. `metric`: the sweep's objective, or
    None to rank by the held-out pass@1 when there is one (see `ranking`)."""
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
    held = _held_out_columns(jobs)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", *keys, "status", "exit_code", *metric_names, *held, "overrides", "error", "folder"])
        for job in jobs:
            swept = job.override_map()
            writer.writerow([job.num, *(swept.get(k, "") for k in keys), job.status, job.exit_code,
                             *(job.metrics.get(m, "") for m in metric_names), *(_held_out_cell(job, c) for c in held),
                             " ".join(job.overrides), job.error or "", job.folder.name])


def _held_out_columns(jobs: list[Job]) -> list[str]:
    """`eval.baseline.<key>` and `eval.final.<key>` (paths into run.json) for every number the jobs' held-out
    evaluations hold, pass@1 first; none when no job has an evaluation."""
    columns: list[str] = []
    for point in ("baseline", "final"):
        names: list[str] = []
        for job in jobs:
            values = getattr(job.held, point, None) if job.held is not None and not job.held.problem else None
            names += [k for k, v in (values or {}).items() if k not in names and number(v) is not None]
        if any(job.held is not None for job in jobs):
            names = [HELD_OUT_KEY] + [k for k in names if k != HELD_OUT_KEY]
        columns += [f"eval.{point}.{k}" for k in names]
    return columns


def _held_out_cell(job: Job, column: str):
    """A job's value in an `eval.<point>.<key>` column: `?` when its eval block cannot be read, "" when absent."""
    if job.held is None:
        return ""
    if job.held.problem:
        return MALFORMED
    _, point, key = column.split(".", 2)
    value = (getattr(job.held, point) or {}).get(key)
    return "" if number(value) is None else value


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _markdown(sweep_dir: Path, jobs: list[Job], keys: list[str], objective: str | None, maximize: bool) -> str:
    ok = sum(job.ok for job in jobs)
    metric, maximize = ranking(jobs, objective, maximize)
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{len(jobs)} jobs: {ok} ok, {len(jobs) - ok} not ok. Folder: `{sweep_dir}`.", "",
             _ranked_by(jobs, metric, maximize, objective), ""]
    best = best_job(jobs, metric, maximize)
    if best is not None:
        lines += [_best_line(best, metric, maximize, keys) + ".", ""]
    by_reward = best_job(jobs, TRAIN_METRIC) if metric.startswith(EVAL_PREFIX) else None
    if by_reward is not None:   # where the two disagree, the reward rewarded what the held-out prompts do not
        lines += [_best_line(by_reward, TRAIN_METRIC, True, keys) + " (the training reward, for comparison: "
                  + ("the same job)." if by_reward is best else "another job)."), ""]
    rank = ranks(jobs, metric, maximize)
    metrics = [m for m in TABLE_METRICS if any(m in job.metrics for job in jobs)]
    times = [(m, short) for m, short in TIME_COLUMNS if any(m in job.metrics for job in jobs)]
    held = [f"eval.{p}.{HELD_OUT_KEY}" for p in ("baseline", "final")] if any(j.held for j in jobs) else []
    header = ["job", *keys, "status", "rank", *(f"{HELD_OUT_KEY} {c.split('.')[1]}" for c in held), *metrics,
              *(short for _, short in times), "folder"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        swept = job.override_map()
        cells = [str(job.num), *(swept.get(k, "") for k in keys), job.status, str(rank.get(job.folder, "-")),
                 *(_fmt(_held_out_cell(job, c)) or "-" for c in held),
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
    plotted = "Reward curves and held-out pass@1" if any(j.held for j in jobs) else "Reward curves"
    lines += ["", f"{plotted}: `{SUMMARY_PNG}`. Every job's overrides and all final metrics: `{SUMMARY_CSV}`.",
              "Repeat one job: `python -m r1exp.reproduce <sweep folder>/<job>`.", ""]
    return "\n".join(lines)


def _best_line(job: Job, metric: str, maximize: bool, keys: list[str]) -> str:
    setting = " ".join(f"{k}={job.override_map().get(k)}" for k in keys) or "the only setting"
    return (f"Best by {metric} ({'highest' if maximize else 'lowest'}): job {job.num} ({setting}), "
            f"{metric} = {_fmt(job.value(metric))}")


def _ranked_by(jobs: list[Job], metric: str, maximize: bool, objective: str | None) -> str:
    """The sentence that says what the sweep was ranked by (the `rank` column, 1 the best), and why, in summary.md."""
    order = "highest" if maximize else "lowest"
    if metric.startswith(EVAL_PREFIX):
        have = sum(job.ok and job.value(metric) is not None for job in jobs)
        text = (f"Ranked by `{metric}`, the final held-out evaluation's {metric[len(EVAL_PREFIX):]} (run.json "
                f"`eval.final.{metric[len(EVAL_PREFIX):]}`), {order} first"
                + (" (the sweep's objective)" if objective else "") + f": the `rank` column. {have} of "
                f"{len(jobs)} jobs ended ok with one")
        return text + (f"; the other ok jobs rank after them, by {TRAIN_METRIC} (the training reward)."
                       if have < len(jobs) else ".")
    if objective:
        return f"Ranked by the sweep's objective `{metric}`, {order} first: the `rank` column."
    return (f"Ranked by `{metric}` (the mean training reward of the last 10% of steps), {order} first: the `rank` "
            f"column. No job that ended ok has a final held-out evaluation (run.json `eval.final.{HELD_OUT_KEY}`).")


def _plot(path: Path, jobs: list[Job], keys: list[str]) -> Path | None:
    logged = [(job, read_metrics(job.folder)) for job in jobs]
    curves = [(job, step_rows(rows), held_out_points(rows, job.held)) for job, rows in logged]
    curves = [(job, rows, points) for job, rows, points in curves if rows or points]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = any(points for _, _, points in curves)   # a second panel: the held-out pass@1 at each evaluation
    fig, axes = plt.subplots(1, 2 if held else 1, figsize=(14 if held else 8, 4.5), squeeze=False)
    ax = axes[0][0]
    for i, (job, rows, points) in enumerate(curves):
        label = f"{job.num}: " + (" ".join(f"{k}={job.override_map().get(k)}" for k in keys) or "job")
        label += "" if job.ok else f" ({job.status})"
        style = {"color": f"C{i % 10}", "linestyle": "-" if job.ok else ":", "marker": "o", "markersize": 3,
                 "label": label}
        if rows:
            ax.plot([r["step"] for r in rows], [r["reward"] for r in rows], **style)
        if points:
            axes[0][1].plot(*zip(*points), **{**style, "marker": "D"})
    ax.set_ylabel("mean reward (weighted sum)")
    ax.set_title(f"sweep {path.parent.name}")
    if held:
        axes[0][1].set_title(f"held-out {HELD_OUT_KEY} (step 0: before training)")
        axes[0][1].set_ylim(-0.02, 1.02)
    for a in axes[0]:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
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


def summarize(sweep_dir: Path, metric: str | None = None, maximize: bool = True) -> int | None:
    """Write the summary of the jobs in sweep_dir; the sweep's exit status (None when there is no sweep folder).
    `metric`: the sweep's objective, or None to rank by the held-out pass@1 or else the training reward."""
    if not Path(sweep_dir).is_dir():
        return None
    secrets.scrub_yaml(Path(sweep_dir) / "multirun.yaml")
    jobs = collect_jobs(sweep_dir)
    paths = write_summary(sweep_dir, jobs, metric, maximize)
    _last.update(exit_code=exit_status(jobs), sweep_dir=Path(sweep_dir))

    metric, maximize = ranking(jobs, metric, maximize)
    print_sweep_summary(sweep_dir, jobs, paths, metric, maximize)  # jobs ok, the best job, where the summary is
    return _last["exit_code"]


def last_exit_code() -> int | None:
    """The exit status of the sweep this process ran last (None when no sweep ended here)."""
    return _last["exit_code"]


def _objective(config) -> tuple[str | None, bool]:
    """The sweep's `objective` and direction; None without one (the summary then picks: see `ranking`)."""
    metric = str(config.get("objective")) if config.get("objective") else None
    direction = str(config.hydra.sweeper.get("direction", "maximize")) if "hydra" in config else "maximize"
    return metric, "min" not in direction


def job_value(cfg, code: int, run_dir: Path):
    """What a job returns to Hydra's sweeper: its exit status; for an Optuna search (`objective: <metric>` in the
    config) the metric from run.json (`metrics`, or `eval/<key>`: the final held-out evaluation's), or the worst value
    when the job failed or has no such value, so the search goes on.

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
    if code != 0:
        return worst
    manifest = read_manifest(run_dir)
    value = metric_value(manifest.get("metrics") or {}, held_out(manifest), str(metric))
    if value is None:
        print(f"objective {metric}: this job has no such value in {Path(run_dir) / MANIFEST_FILE}"
              + (" (no final held-out evaluation: is eval off?)" if str(metric).startswith(EVAL_PREFIX) else "")
              + "; it counts as the worst value", flush=True)
    return worst if value is None else value


def sweep_summary(sweep_dir: Path, jobs: list, paths: dict, metric: str = "reward_last10",
                  maximize: bool = True) -> tuple[str, list[tuple[str, str]]]:

    ok = sum(job.ok for job in jobs)
    lines = [("folder", str(sweep_dir))]
    best = best_job(jobs, metric, maximize)
    if best is not None:
        keys = swept_keys(jobs)
        setting = " ".join(f"{k}={best.override_map().get(k)}" for k in keys) or "the only setting"
        lines.append(("best", f"job {best.num} ({setting}): {metric} {fmt(best.value(metric))}, {best.folder}"))
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
