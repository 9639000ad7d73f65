"""No secret reaches what the HF Trainer writes: a credential in trainer.* (which the Trainer pickles into
training_args.bin, also uploaded as the W&B artifact) is refused before anything starts, with the fix."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

import r1exp.__main__ as entry
from conftest import ROOT, run_cli
from r1exp.checks import secrets
from r1exp.config.compose import compose
from r1exp.config.rule import Context

TOKEN = "hf_r1exp_test_secret_0123456789"


def problems(overrides, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = compose(overrides)
    return list(secrets.trainer_secrets(Context(cfg, None, dry_run=False)))


@pytest.mark.parametrize("overrides,key", [
    (["+trainer.hub_token=${oc.env:HF_TOKEN}"], "trainer.hub_token"),          # by name, from the environment
    ([f"+trainer.hub_token={TOKEN}"], "trainer.hub_token"),                   # by name, typed in
    (["+trainer.hub_model_id=${oc.env:HF_TOKEN}"], "trainer.hub_model_id"),   # by value, under another name
    (["+trainer.model_init_kwargs={token: abc123}"], "trainer.model_init_kwargs.token"),   # nested
])
def test_a_secret_in_the_trainer_settings_is_refused(monkeypatch, overrides, key):
    found = problems(overrides, monkeypatch)
    assert [p.key for p in found] == [key]
    assert TOKEN not in found[0].render() and "training_args.bin" in found[0].why and "environment" in found[0].fix


@pytest.mark.parametrize("overrides", [[], ["+trainer.hub_model_id=me/model"], ["+trainer.hub_token=null"]])
def test_trainer_settings_without_secrets_pass(monkeypatch, overrides):
    assert problems(overrides, monkeypatch) == []


def test_the_command_line_stops_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(entry, "_hydra", lambda *a: pytest.fail("the run started"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main(["logger=none", "+trainer.hub_token=${oc.env:HF_TOKEN}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert code == 2 and "secrets.trainer" in out.getvalue() and TOKEN not in out.getvalue()
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_no_file_of_a_real_run_holds_the_token(tmp_path):
    """A real run (W&B offline, checkpoints, adapter) with the token in the environment: no file contains it."""
    result = run_cli(["engine=hf", "trainer.max_steps=2", "++trainer.save_strategy=steps", "++trainer.save_steps=1",
                      "logger.mode=offline", "name=secret_check"], tmp_path / "run", env={"HF_TOKEN": TOKEN})
    assert result.code == 0, result.output[-3000:]
    files = [p for p in Path(tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files)
    assert [str(p) for p in files if TOKEN.encode() in p.read_bytes()] == []
