"""Shared test setup: an isolated cache and W&B folder, offline flags, and a helper that runs the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Locally built models are cached across test sessions (a fresh clone builds the tiny model once, ~25 s).
os.environ.setdefault("R1EXP_CACHE", str(ROOT / ".cache" / "r1exp"))
for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "WANDB_MODE": "offline", "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false",
                   "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}.items():
    os.environ.setdefault(key, value)
os.environ.pop("WANDB_API_KEY", None)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(args: list[str], run_dir: Path, module: str = "r1exp", timeout: int = 600, env: dict | None = None,
            cwd: Path | None = None) -> CliResult:
    """`python -m r1exp ARGS` in a subprocess, its run folder at run_dir (single runs)."""
    cmd = [sys.executable, "-m", module, *args]
    if module == "r1exp" and not any(a in ("-m", "--multirun") for a in args):
        cmd.append(f"hydra.run.dir={run_dir}")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT)
    return CliResult(proc.returncode, proc.stdout, proc.stderr, Path(run_dir))


@pytest.fixture
def cli(tmp_path):
    def _run(*args, **kwargs):
        return run_cli(list(args), tmp_path / "run", **kwargs)

    return _run
