"""run.json: what ran, with which code and packages, where, when, and how it ended.

Everything in it is free of secrets (`r1exp.records.secrets`): the config, the command line and the error message. A run
that is resumed in its own folder keeps the earlier attempts under `attempts`, so the manifest tells the whole
story of the folder.

A run that is killed (SIGKILL, out of memory, a node that dies) cannot write its end: run.json keeps `running`.
So while it runs, run.json carries who runs it (`pid`, `pid_started`, `host`) and a `heartbeat` rewritten every
HEARTBEAT_S seconds; `run_state(run_dir)` tells a live run from a dead one (reproduce, resume and the runs list
ask it rather than reading `status`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from r1exp.records import secrets
from r1exp.machine import processes
from r1exp.machine.facts import installed_versions

MANIFEST_FILE = "run.json"
STATUSES = ("running", "ok", "failed", "interrupted")
# What run_state() says of a folder: a status, or `dead` (run.json says running, its process is gone), or
# `unknown` (no run.json, or one that cannot be read).
STATES = (*STATUSES, "dead", "unknown")
HEARTBEAT_S = 30.0      # how often a running run rewrites its heartbeat
STALE_AFTER_S = 150.0   # a heartbeat older than this from another machine (whose processes cannot be seen): dead
# What an earlier attempt in the same folder leaves in `attempts` when the run is resumed.
ATTEMPT_FIELDS = ("status", "exit_code", "start", "end", "command", "git", "versions", "metrics", "error",
                  "checkpoint", "wandb_id")


def git_state(repo: Path | None = None) -> dict:
    """The commit, whether tracked files differ from it, and a hash of that difference (to tell two dirty trees
    apart when a run is reproduced)."""
    repo = repo or Path(__file__).resolve().parents[2]
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
    from r1exp.machine.processes import launched_hydra_job

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
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "heartbeat": now(),
            "heartbeat_interval_s": HEARTBEAT_S,
            "git": git_state(),
            "command": secrets.redact_argv(sys.argv),
            "hydra": hydra_job(),
            "slurm": processes.slurm_job(),  # the SLURM job and node (None outside SLURM)
            "start": now(),
            "end": None,
            "metrics": {},
            "error": None,
        }
        if resume and self.path.exists():
            earlier = read_manifest(run_dir)
            attempt = {k: earlier.get(k) for k in ATTEMPT_FIELDS}
            attempt["status"] = run_state(run_dir)  # `dead` rather than the `running` a killed attempt left
            self.data["attempts"] = earlier.get("attempts", []) + [attempt]
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.write()
        self._beat = threading.Thread(target=self._heartbeat, name="r1exp-heartbeat", daemon=True)
        self._beat.start()

    def update(self, **fields) -> None:
        with self._lock:
            self.data.update(fields)
            self.write()

    def finish(self, status: str, metrics: dict | None = None, error: str | None = None,
               exit_code: int | None = None, **fields) -> None:
        assert status in STATUSES, status
        self._stop.set()
        self.update(status=status, end=now(), metrics=metrics or self.data["metrics"],
                    error=secrets.redact_text(error) if error else None, exit_code=exit_code, **fields)

    def write(self) -> None:
        from r1exp.machine.processes import is_main_process

        if not is_main_process():  # the ranks of a distributed run share rank 0's run.json
            return
        with self._lock:
            _write(self.path, self.data)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                if self._stop.is_set():
                    return
                self.data["heartbeat"] = now()
                try:
                    self.write()
                except OSError:  # a full or vanished disk: the run itself will say so
                    pass


def _write(path: Path, data: dict) -> None:
    """Atomically: a temporary file of this process and thread, renamed over run.json."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / MANIFEST_FILE).read_text())


def process_started(pid: int) -> float | None:
    """When a process started (seconds since the epoch), to tell it from a later process given the same pid."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def run_state(run_dir: Path, now_ts: float | None = None, stale_after: float = STALE_AFTER_S) -> str:
    """ok | failed | interrupted | running | dead | unknown.

    `running` in run.json is believed only while its process lives: on this machine, while the pid exists and is
    the same process (its start time); for a run on another machine, while its heartbeat is younger than
    `stale_after` seconds.
    """
    try:
        data = read_manifest(run_dir)
    except (OSError, ValueError):
        return "unknown"
    status = data.get("status") if isinstance(data, dict) else None
    if status not in STATUSES:
        return "unknown"
    if status != "running":
        return status
    return "running" if _alive(data, now_ts, stale_after) else "dead"


def _alive(data: dict, now_ts: float | None, stale_after: float) -> bool:
    beat = _timestamp(data.get("heartbeat") or data.get("start"))
    now_ts = datetime.now(timezone.utc).timestamp() if now_ts is None else now_ts
    fresh = beat is not None and now_ts - beat <= stale_after
    pid = data.get("pid")
    if data.get("host") != socket.gethostname() or not isinstance(pid, int):
        return fresh  # another machine (or a run.json from before pids were kept): the heartbeat is all there is
    import psutil

    if not psutil.pid_exists(pid):
        return False
    started, current = data.get("pid_started"), process_started(pid)
    # the same process (a suspended one too), not a later one given the same pid
    return started is None or current is None or abs(current - started) <= 1.0


def _timestamp(text) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


def describe_owner(run_dir: Path) -> str:
    """`pid 123 on host h, heartbeat 2026-...` for messages about a run that is still running."""
    try:
        data = read_manifest(run_dir)
    except (OSError, ValueError):
        return "owner unknown"
    return f"pid {data.get('pid')} on host {data.get('host')}, last heartbeat {data.get('heartbeat')}"


def update_manifest(run_dir: Path, **fields) -> dict:
    """Add fields to a finished run's run.json (a reproduction's verdict)."""
    data = {**read_manifest(run_dir), **fields}
    _write(Path(run_dir) / MANIFEST_FILE, data)
    return data
