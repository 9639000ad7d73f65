"""W&B never kills a run: the user's WANDB_MODE wins over logger.mode=auto, and an online W&B that cannot be reached
falls back to offline with a warning (real wandb, offline files in the run folder)."""

from __future__ import annotations

import socket

import pytest
from omegaconf import OmegaConf

from r1exp.observe import wandb_connect


@pytest.mark.parametrize("mode,environ,expected", [
    ("auto", {}, "offline"),
    ("auto", {"WANDB_API_KEY": "k" * 40}, "online"),
    ("auto", {"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, "offline"),   # the environment wins
    ("auto", {"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "disabled"}, "disabled"),
    ("auto", {"WANDB_API_KEY": "k" * 40, "WANDB_DISABLED": "true"}, "disabled"),
    ("auto", {"WANDB_MODE": "dryrun"}, "offline"),
    ("auto", {"WANDB_MODE": "online"}, "online"),
    ("offline", {"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "online"}, "offline"),  # an explicit logger.mode is kept
])
def test_mode(tmp_path, mode, environ, expected):
    env = {"NETRC": str(tmp_path / "no-netrc"), **environ}
    assert wandb_connect.mode_for(OmegaConf.create({"mode": mode}), env) == expected


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_wandb_falls_back_to_offline_with_a_warning(tmp_path, monkeypatch, capsys):
    import wandb

    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    mode = wandb_connect.init(wandb, "online", project="r1exp-test", dir=str(tmp_path))
    try:
        assert mode == "offline" and wandb.run is not None and wandb.run.settings.mode == "offline"
    finally:
        wandb.finish()
    err = capsys.readouterr().err
    assert "W&B online is not available" in err and "wandb sync" in err and "k" * 40 not in err
    assert list((tmp_path / "wandb").glob("offline-run-*"))
