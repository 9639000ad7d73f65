"""Shared test setup: an isolated cache and W&B folder, offline flags, and a helper that runs the real CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Locally built models are cached across test sessions (a fresh clone copies the shipped tiny model; other recipes build in ~15 s).
os.environ.setdefault("R1EXP_CACHE", str(ROOT / ".cache" / "r1exp"))
for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "WANDB_MODE": "offline", "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false",
                   "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}.items():
    os.environ.setdefault(key, value)
os.environ.pop("WANDB_API_KEY", None)


def bench_module(name: str):
    """A script of bench/ (not a package) imported as a module, for the tests of its functions."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


# ---- a Hugging Face cache of our own (r1exp.machine.hub reads HF_HOME at each call)

HF_CACHE_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                 "HF_TOKEN_PATH", "HF_ENDPOINT")
MODEL_FILES = {"config.json": "{}", "tokenizer.json": "{}", "model.safetensors": "",
               "tokenizer_config.json": '{"chat_template": "{{ messages }}"}'}


def put_in_hub_cache(hf_home: Path, repo_id: str, kind: str = "model", files: dict | None = None) -> Path:
    """A repository in huggingface_hub's cache layout under hf_home/hub (snapshot files are symlinks to blobs,
    as huggingface_hub writes them)."""
    root = hf_home / "hub" / f"{kind}s--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)
    (root / "blobs").mkdir(exist_ok=True)
    if files is None:   # a model: its real config.json when tests/fixtures/model_configs has it
        fixture = ROOT / "tests" / "fixtures" / "model_configs" / repo_id.replace("/", "__") / "config.json"
        files = {**MODEL_FILES, **({"config.json": fixture.read_text()} if fixture.is_file() else {})}
    for i, (name, text) in enumerate(files.items()):
        blob = root / "blobs" / f"{i:040d}"
        blob.write_text(text)
        (snapshot / name).symlink_to(blob)
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty Hugging Face cache (HF_HOME), the hub offline as everywhere in the tests."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    for var in HF_CACHE_VARS:
        monkeypatch.delenv(var, raising=False)
    return home
