"""run.json: what ran, with which code and packages, where, when, and how it ended."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from r1exp.config.environment import installed_versions

MANIFEST_FILE = "run.json"
STATUSES = ("running", "ok", "failed", "interrupted")


def git_state(repo: Path | None = None) -> dict:
    repo = repo or Path(__file__).resolve().parent.parent
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": commit.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Written at the start (status running) and rewritten at every change, so a crash leaves 'running' or
    'failed', never a folder that looks like a finished run."""

    def __init__(self, run_dir: Path, resolved_config: dict, seed: int, device: str):
        self.path = Path(run_dir) / MANIFEST_FILE
        self.data = {
            "status": "running",
            "run_dir": str(run_dir),
            "config": resolved_config,
            "seed": seed,
            "device": device,
            "versions": installed_versions(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "git": git_state(),
            "command": sys.argv,
            "start": now(),
            "end": None,
            "metrics": {},
            "error": None,
        }
        self.write()

    def update(self, **fields) -> None:
        self.data.update(fields)
        self.write()

    def finish(self, status: str, metrics: dict | None = None, error: str | None = None) -> None:
        assert status in STATUSES, status
        self.update(status=status, end=now(), metrics=metrics or self.data["metrics"], error=error)

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / MANIFEST_FILE).read_text())
