"""Metrics of a run: one JSON line per logged step, the reward curve, and the experiment tracker (W&B)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
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
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    return MetricsRecorder()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_rows(rows: list[dict]) -> list[dict]:
    """Per-step training rows (the ones with a reward), leaving out the end-of-training summary line."""
    return [r for r in rows if "reward" in r]


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
    end = [r for r in rows if "train_runtime" in r]
    if end:
        out["train_runtime_s"] = end[-1]["train_runtime"]
    return out


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
    """auto = online when an API key is configured, offline otherwise (a first run never waits at a login)."""
    mode = str(logger_cfg.get("mode", "auto"))
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def start_tracker(cfg, run_dir: Path, resolved: dict, manifest: dict) -> str:
    """Start the W&B run before TRL, so TRL's WandbCallback logs into it. Returns GRPOConfig.report_to."""
    if cfg.logger.name != "wandb":
        return "none"
    import wandb

    mode = wandb_mode(cfg.logger)
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    wandb.init(
        project=cfg.logger.project, entity=cfg.logger.get("entity"), name=str(Path(run_dir).name),
        group=cfg.logger.get("group"), tags=list(cfg.logger.get("tags") or []), mode=mode, dir=str(run_dir),
        config=resolved, notes=f"r1exp run {run_dir}",
    )
    wandb.run.summary["r1exp/git_commit"] = manifest.get("git", {}).get("commit")
    return "wandb"


def finish_tracker(cfg, summary: dict, status: str) -> None:
    if cfg.logger.name != "wandb":
        return
    import wandb

    if wandb.run is not None:
        for key, value in summary.items():
            wandb.run.summary[f"r1exp/{key}"] = value
        wandb.finish(exit_code=0 if status == "ok" else 1)


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    return v
