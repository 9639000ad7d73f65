"""run.json: what ran, with which code and packages, where, when, and how it ended.

Everything in it is free of secrets (`r1exp.secrets`): the config, the command line and the error message. A run
that is resumed in its own folder keeps the earlier attempts under `attempts`, so the manifest tells the whole
story of the folder.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from r1exp import secrets, slurm
from r1exp.config.environment import installed_versions

MANIFEST_FILE = "run.json"
STATUSES = ("running", "ok", "failed", "interrupted")
# What an earlier attempt in the same folder leaves in `attempts` when the run is resumed.
ATTEMPT_FIELDS = ("status", "exit_code", "start", "end", "command", "git", "versions", "metrics", "error",
                  "checkpoint", "wandb_id")


def git_state(repo: Path | None = None) -> dict:
    """The commit, whether tracked files differ from it, and a hash of that difference (to tell two dirty trees
    apart when a run is reproduced)."""
    repo = repo or Path(__file__).resolve().parent.parent
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        diff = hashlib.sha256(git("diff", "HEAD", "--no-ext-diff").stdout.encode()).hexdigest()[:16] if dirty else None
        return {"commit": commit.stdout.strip(), "dirty": dirty, "diff_sha256": diff}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def hydra_job() -> dict:
    """Which Hydra job this is: run or multirun, the sweep folder, the job number and its overrides ({} outside
    Hydra). The sweep summary and the W&B group are read from here."""
    from r1exp.distributed import launched_hydra_job

    launched = launched_hydra_job()  # a rank of a distributed run: the job that launched it
    if launched is not None:
        return launched
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return {}
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return {
            "mode": "multirun" if multirun else "run",
            "sweep_dir": str(hc.sweep.dir) if multirun else None,
            "job_num": int(hc.job.num) if multirun else None,
            "overrides": secrets.redact_argv(list(hc.overrides.task)),
            "choices": {k: v for k, v in dict(hc.runtime.choices).items() if not k.startswith("hydra/")},
        }
    except Exception:  # noqa: BLE001 - Hydra facts are a courtesy; a manifest is written without them
        return {}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Written at the start (status running) and rewritten at every change, so a crash leaves 'running' or
    'failed', never a folder that looks like a finished run."""

    def __init__(self, run_dir: Path, resolved_config: dict, seed: int, device: str, resume: bool = False):
        self.path = Path(run_dir) / MANIFEST_FILE
        self.data = {
            "status": "running",
            "exit_code": None,
            "run_dir": str(run_dir),
            "config": secrets.redact(resolved_config),
            "seed": seed,
            "device": device,
            "versions": installed_versions(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "git": git_state(),
            "command": secrets.redact_argv(sys.argv),
            "hydra": hydra_job(),
            "slurm": slurm.job_facts(),  # the SLURM job and node (None outside SLURM)
            "start": now(),
            "end": None,
            "metrics": {},
            "error": None,
        }
        if resume and self.path.exists():
            earlier = read_manifest(run_dir)
            attempt = {k: earlier.get(k) for k in ATTEMPT_FIELDS}
            self.data["attempts"] = earlier.get("attempts", []) + [attempt]
        self.write()

    def update(self, **fields) -> None:
        self.data.update(fields)
        self.write()

    def finish(self, status: str, metrics: dict | None = None, error: str | None = None,
               exit_code: int | None = None, **fields) -> None:
        assert status in STATUSES, status
        self.update(status=status, end=now(), metrics=metrics or self.data["metrics"],
                    error=secrets.redact_text(error) if error else None, exit_code=exit_code, **fields)

    def write(self) -> None:
        from r1exp.distributed import is_main_process

        if is_main_process():  # the ranks of a distributed run share rank 0's run.json
            _write(self.path, self.data)


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / MANIFEST_FILE).read_text())


def update_manifest(run_dir: Path, **fields) -> dict:
    """Add fields to a finished run's run.json (a reproduction's verdict)."""
    data = {**read_manifest(run_dir), **fields}
    _write(Path(run_dir) / MANIFEST_FILE, data)
    return data
