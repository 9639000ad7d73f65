"""A failed or killed build of a local model leaves no temporary folder in the cache."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from r1exp.models import tiny


def test_a_failed_build_removes_its_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("R1EXP_CACHE", str(tmp_path))
    model_cfg = OmegaConf.create({"arch": {"family": "qwen2", "vocab": -5}, "warmup": None})

    def fail(*args, **kwargs):
        raise RuntimeError("build failed")

    monkeypatch.setattr(tiny, "_train_tokenizer", fail)
    with pytest.raises(RuntimeError, match="build failed"):
        tiny.ensure_local_model(model_cfg, OmegaConf.create({}))
    assert list((tmp_path / "models").iterdir()) == []


def test_the_folders_of_killed_builds_on_this_machine_are_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = socket.gethostname()
    dead = tmp_path / f"qwen2-abc{tiny.TMP_MARK}{host}-{proc.pid}"
    alive = tmp_path / f"qwen2-abc{tiny.TMP_MARK}{host}-1"                # pid 1 lives
    elsewhere = tmp_path / f"qwen2-abc{tiny.TMP_MARK}other-node-{proc.pid}"  # another machine's build
    for folder in (dead, alive, elsewhere):
        folder.mkdir()
    assert tiny._remove_stale_builds(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and elsewhere.exists()
