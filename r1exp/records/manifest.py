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

import contextlib
import errno
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

from r1exp.errors import is_disk_full
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
RESERVE_FILE = ".run.json.reserve"   # room kept for run.json's last record while a run runs (removed at its end)
RESERVE_BYTES = 64 * 1024
# Dropped, in this order, only when run.json's last record fits nowhere else (a disk with no byte left): the
# config is in .hydra/config.yaml, the rest is detail.
TRIM_ORDER = ("versions", "trainer_args", "plan", "startup", "config", "attempts", "eval", "distributed", "slurm",
              "hydra", "git", "command", "metrics")
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
        self.reserve = Reserve(self.path.with_name(RESERVE_FILE))
        self.write()
        self.reserve.take()   # after run.json: a disk that is nearly full at the start still gets a record
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
        try:
            self.update(status=status, end=now(), metrics=metrics or self.data["metrics"],
                        error=secrets.redact_text(error) if error else None, exit_code=exit_code, **fields)
        finally:
            if status != "running":
                self.reserve.release()

    def close(self) -> None:
        """The run is over: no more heartbeats, and the reserve is given back (finish does both)."""
        self._stop.set()
        self.reserve.release()

    def write(self) -> None:
        from r1exp.machine.processes import is_main_process

        if not is_main_process():  # the ranks of a distributed run share rank 0's run.json
            return
        with self._lock:
            ended = self.data.get("status") != "running"   # only the last record may use the reserve
            _write(self.path, self.data, self.reserve if ended else None, in_place=ended)

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


class Reserve:
    """A few KiB set aside on the run folder's disk while a run runs, given back when run.json must be rewritten
    and the disk is full. Taken with fallocate (real blocks, not a sparse file); at most a quarter of the free space
    (halved until it fits, down to one block); none on a disk without room (the in-place write remains)."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES):
        self.path, self.size, self.held = Path(path), size, 0

    def take(self) -> int:
        from r1exp.machine.processes import is_main_process

        if not is_main_process():
            return 0
        try:   # never more than a quarter of what is free: the reserve must not be what fills a small disk
            st = os.statvfs(self.path.parent)
            size = min(self.size, st.f_bavail * st.f_frsize // 4)
        except OSError:
            size = self.size
        while size >= 4096 and not self.held:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            except OSError:
                return 0
            try:
                _allocate(fd, size)
                self.held = size
            except OSError:
                size //= 2
            finally:
                os.close(fd)
        if not self.held:
            self.path.unlink(missing_ok=True)
        return self.held

    def release(self) -> bool:
        """Delete the reserve (whether there was one to free)."""
        held, self.held = self.held, 0
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        return bool(held)


def _allocate(fd: int, size: int) -> None:
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    block = b"\0" * 4096
    for _ in range(0, size, len(block)):  # no fallocate (macOS): zeros, written out
        os.write(fd, block)
    os.fsync(fd)


def _write(path: Path, data: dict, reserve: Reserve | None = None, in_place: bool = True) -> None:
    """Atomically: a temporary file of this process and thread, renamed over run.json. On a full disk: again after
    giving back the reserve, else in place (`_overwrite`) unless in_place=False (then the OSError is raised). Never
    leaves a temporary file or a half-written run.json."""
    text = json.dumps(data, indent=2, default=str)
    for attempt in ("as is", "with the reserve given back"):
        if attempt != "as is" and (reserve is None or not reserve.release()):
            break
        try:
            _replace(path, text)
            return
        except OSError as e:
            if not is_disk_full(e):
                raise
    if not in_place:
        raise OSError(errno.ENOSPC, "no space left on device", str(path))
    _overwrite(path, data)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _overwrite(path: Path, data: dict) -> None:
    """run.json rewritten in place, within the blocks it already holds (no new space needed): compact, and
    without the fields of TRIM_ORDER (named under `trimmed`) while it does not fit. Raises OSError(ENOSPC) when
    there is no run.json to write over, leaving it as it was."""
    try:
        st = path.stat()
    except OSError:
        raise OSError(errno.ENOSPC, "no space left on device", str(path)) from None
    room = max(st.st_size, getattr(st, "st_blocks", 0) * 512)
    record, trimmed = dict(data), []
    text = json.dumps(record, separators=(",", ":"), default=str)
    for key in TRIM_ORDER:
        if len(text.encode()) <= room:
            break
        if key in record:
            record.pop(key)
            trimmed.append(key)
            record["trimmed"] = trimmed
            text = json.dumps(record, separators=(",", ":"), default=str)
    payload = text.encode()
    if len(payload) > room:
        raise OSError(errno.ENOSPC, "no space left on device", str(path))
    with open(path, "r+b") as f:
        f.write(payload)
        f.truncate(len(payload))
        f.flush()
        os.fsync(f.fileno())


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
    _write(Path(run_dir) / MANIFEST_FILE, data)  # a full disk: in place, compact (never half-written)
    return data
