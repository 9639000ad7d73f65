"""Metrics of a run: one JSON line per logged step, the reward curve, and the experiment tracker (W&B).

W&B: r1exp starts the run itself, before TRL, so TRL's WandbCallback logs into it (`wandb.run` is reused). The run
carries the resolved config (secrets redacted) and the manifest's facts under `r1exp`; jobs of one sweep share a
group named after the sweep folder; the completions of every step go to a `completions` table (TRL's
`log_completions`); the adapter, config and manifest end as a `model` artifact. With `mode: auto` a machine without
an API key logs offline into the run folder (`wandb sync <run_dir>/wandb/offline-run-*` uploads it later);
`r1exp.records.wandb_offline.read_offline_run` reads those files back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from r1exp.records import secrets
from r1exp.records.metrics import METRICS_FILE, read_metrics, step_rows
from r1exp.observe import timing
from r1exp.patches.trl_completions_table import uniform_messages

CURVE_FILE = "reward_curve.png"


def metrics_callback(run_dir: Path):
    """A transformers TrainerCallback that appends every log line (with its step) to metrics.jsonl."""
    from transformers import TrainerCallback

    path = Path(run_dir) / METRICS_FILE

    class MetricsRecorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            row = {"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}}
            append_line(path, json.dumps(row) + "\n")

    return MetricsRecorder()


def append_line(path: Path, line: str) -> None:
    """Append one whole line, or nothing: a write the disk cuts short is truncated away again (truncating needs no
    space), so metrics.jsonl never ends in half a line; the OSError is raised."""
    data = line.encode()
    with path.open("ab", buffering=0) as f:   # unbuffered: nothing is left to be flushed after a failure
        start = f.seek(0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += f.write(data[done:])
        except OSError:
            with contextlib.suppress(OSError):
                f.truncate(start)
            raise










def prepare_completions_table(trainer) -> None:
    """What TRL logs of each step's prompts and completions (`log_completions`: trainer/completions/*.parquet, the
    W&B `completions` table, the console sample) goes through r1exp.records.secrets first: a secret in the system
    prompt, or one a completion repeats, is written as `<redacted>`. The model still sees the prompt as given.

    GRPOTrainer.log writes the table from `trainer._logs`; this runs just before it, on the trainer's own buffers,
    and also gives a tool run's messages one shape (r1exp.patches.trl_completions_table)."""
    buffers = getattr(trainer, "_logs", None)
    if not isinstance(buffers, dict) or getattr(trainer, "_r1exp_prepares_table", False):
        return
    original = trainer.log

    def log(logs, *args, **kwargs):
        scrub_buffers(getattr(trainer, "_logs", None))
        uniform_messages(getattr(trainer, "_logs", None))   # a tool run's messages, as wandb.Table takes them
        return original(logs, *args, **kwargs)

    trainer.log = log
    trainer._r1exp_prepares_table = True


def scrub_buffers(buffers) -> None:
    """Redact, in place, the prompt / completion / extra columns TRL keeps for its completions table."""
    if not isinstance(buffers, dict):
        return
    values = secrets.secret_values()
    columns = [buffers.get("prompt"), buffers.get("completion")]
    extra = buffers.get("extra")
    if isinstance(extra, dict):
        columns += list(extra.values())
    for column in columns:
        if column is None or not hasattr(column, "__setitem__"):
            continue
        for i, item in enumerate(list(column)):
            clean = secrets.redact_values(item, values)
            if clean != item:
                column[i] = clean


def plot_reward_curve(run_dir: Path, title: str = "") -> Path | None:
    steps = step_rows(read_metrics(run_dir))
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["step"] for r in steps]
    ax.plot(xs, [r["reward"] for r in steps], label="reward (weighted sum)", linewidth=2)
    for key in sorted({k for r in steps for k in r if k.startswith("rewards/") and k.endswith("/mean")}):
        ax.plot(xs, [r.get(key, math.nan) for r in steps], label=key.split("/")[1], alpha=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.set_title(title or Path(run_dir).name)
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(run_dir) / CURVE_FILE
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def wandb_mode(logger_cfg) -> str:
    """auto = the environment's WANDB_MODE if set, else online when an API key is configured, offline otherwise (a
    first run never waits at a login); see r1exp.observe.wandb_connect."""
    from r1exp.observe.wandb_connect import mode_for

    return mode_for(logger_cfg)


def grpo_logging_args(cfg, report_to: str) -> dict:
    """GRPOConfig keys for logging: completions go to the W&B table, not to the console (trainer.* still wins)."""
    if report_to != "wandb" or not cfg.logger.get("log_completions", False):
        return {}
    return {"log_completions": True, "num_completions_to_print": 0}


def run_identity(cfg, run_dir: Path, manifest: dict) -> dict:
    """W&B name and group: a sweep's jobs share the sweep folder's name as group, and are named by job number."""
    job = manifest.get("hydra") or {}
    name, group = Path(run_dir).name, cfg.logger.get("group")
    if job.get("mode") == "multirun" and job.get("sweep_dir"):
        sweep = Path(job["sweep_dir"])
        group = group or f"{sweep.parent.name}_{sweep.name}"
        name = f"{sweep.name}-{job['job_num']}"
    return {"name": name, "group": group}


def start_tracker(cfg, run_dir: Path, resolved: dict, manifest: dict) -> str:
    """Start the W&B run before TRL, so TRL's WandbCallback logs into it. Returns GRPOConfig.report_to.

    A resumed run (resume=true) logs into the W&B run of the attempt it continues."""
    if cfg.logger.name != "wandb":
        return "none"
    from r1exp.machine.processes import is_main_process

    if not is_main_process():
        return "wandb"  # rank 0 logs the run; the same report_to on every rank (TRL gathers completions for it)
    import wandb

    earlier = (manifest.get("attempts") or [{}])[-1]
    resume_id = earlier.get("wandb_id") if cfg.get("resume", False) else None
    mode = wandb_mode(cfg.logger)
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    facts = {k: manifest.get(k) for k in ("run_dir", "seed", "device", "git", "versions", "hydra")}
    from r1exp.observe.wandb_connect import init

    with _argv(secrets.redact_argv(sys.argv)):  # W&B records the command line in its metadata
        init(  # online falls back to offline (with a warning) when W&B cannot be reached
            wandb, mode,
            project=cfg.logger.project, entity=cfg.logger.get("entity"), **run_identity(cfg, run_dir, manifest),
            tags=list(cfg.logger.get("tags") or []), dir=str(run_dir), job_type="grpo",
            config={**secrets.redact(resolved), "r1exp": secrets.redact(facts)}, notes=f"r1exp run {run_dir}",
            id=resume_id, resume="allow" if resume_id else None,
        )
    return "wandb"


def tracker_run_id() -> str | None:
    if "wandb" not in sys.modules:
        return None
    import wandb

    return wandb.run.id if wandb.run is not None else None


def finish_tracker(cfg, summary: dict, status: str, run_dir: Path | None = None) -> None:
    """Final metrics into the W&B summary; for a finished run, the adapter + config + manifest as an artifact."""
    if cfg.logger.name != "wandb" or "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is None:
        return
    try:
        for key, value in summary.items():
            wandb.run.summary[f"r1exp/{key}"] = value
        wandb.run.summary["r1exp/status"] = status
        if status == "ok" and run_dir is not None and (Path(run_dir) / "adapter").is_dir():
            wandb.run.log_artifact(_artifact(wandb, Path(run_dir), summary))
    finally:
        try:
            wandb.finish(exit_code=0 if status == "ok" else 1)
        except Exception as e:  # noqa: BLE001 - a full disk under run_dir/wandb: run.json keeps the facts
            from r1exp.errors import disk_full_reason

            reason = disk_full_reason(e, Path(run_dir or ".") / "wandb")
            if reason is None:
                raise
            print(f"r1exp: W&B could not close its run: {reason}", file=sys.stderr)


def _artifact(wandb, run_dir: Path, summary: dict):
    artifact = wandb.Artifact(f"adapter-{wandb.run.id}", type="model", metadata=dict(summary),
                              description=f"LoRA adapter, resolved config and run.json of {run_dir.name}")
    artifact.add_dir(str(run_dir / "adapter"), name="adapter", policy="immutable")
    for name in (".hydra/config.yaml", "run.json"):
        if (run_dir / name).exists():
            artifact.add_file(str(run_dir / name), name=Path(name).name, policy="immutable")
    return artifact


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    return v


def summarize(rows: list[dict]) -> dict:
    """Final metrics: last values, and the mean reward of the first and last 10% of steps."""
    steps = step_rows(rows)
    out: dict = {"steps_logged": len(steps)}
    if not steps:
        return out
    k = max(1, len(steps) // 10)
    out["reward_first10"] = sum(r["reward"] for r in steps[:k]) / k
    out["reward_last10"] = sum(r["reward"] for r in steps[-k:]) / k
    for key, value in steps[-1].items():
        if isinstance(value, (int, float)) and key != "step":
            out[f"final/{key}"] = value
    out.update(timing.summarize_steps(steps))  # time_mean/<phase>: seconds per step after the first
    end = [r for r in rows if "train_runtime" in r]
    if end:
        out["train_runtime_s"] = end[-1]["train_runtime"]
    return out
