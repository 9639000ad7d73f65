"""A secret typed into the prompts (data.system_prompt) is warned about before the run, by what it is and never by
its value, and no file of the run holds it: run.json, .hydra/, TRL's completions tables (parquet, read back with
pandas), the W&B offline run (its table files and its .wandb log), train.log and the console."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest

from conftest import run_cli
from r1exp.config.compose import compose
from r1exp.config.rule import Context

TOKEN_FORM = "hf_PlantedSecretAbcdefghijklmnop1234"    # recognisable by its form
ENV_VALUE = "svcvalue_7f3a9c2e41"                      # the value of a secret-named environment variable
PROMPT = f"Think, then answer as <think>...</think><answer>...</answer>. Key {TOKEN_FORM} and {ENV_VALUE}."


def test_the_preflight_names_the_secret_not_its_value(monkeypatch):
    from r1exp.checks.secrets import prompt_secrets

    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_VALUE)
    cfg = compose([f"data.system_prompt='{PROMPT}'"])
    found = list(prompt_secrets(Context(cfg, None, dry_run=False)))
    assert [(p.key, p.severity, p.rule) for p in found] == [("data.system_prompt", "warning", "secrets.prompt")]
    text = found[0].render()
    assert "$MY_SERVICE_TOKEN" in text and "hf_..." in text
    assert TOKEN_FORM not in text and ENV_VALUE not in text


def test_an_ordinary_prompt_gets_no_warning():
    from r1exp.checks.secrets import prompt_secrets

    assert list(prompt_secrets(Context(compose([]), None, dry_run=False))) == []


@pytest.mark.parametrize("text,kept", [
    ("commit 0123456789abcdef0123456789abcdef01234567", True),   # a git commit is not a token
    ("cache at /data/hf_cache/models", True),
    ("a task-risk-assessment-of-the-things", True),
    (f"use {TOKEN_FORM} here", False),
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", False),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", False),
    ("AKIAABCDEFGHIJKLMNOP", False),
])
def test_tokens_recognisable_by_their_form(text, kept):
    from r1exp.records.secrets import redact_text

    assert (redact_text(text, set()) == text) == kept


def test_trl_completion_buffers_are_redacted_in_place(monkeypatch):
    from r1exp.observe.tracking import prepare_completions_table

    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_VALUE)

    class Trainer:   # what GRPOTrainer.log reads its completions table from
        def __init__(self):
            self._logs = {"prompt": deque([[{"role": "system", "content": PROMPT}, {"role": "user", "content": "1+1"}]]),
                          "completion": deque([f"the key is {ENV_VALUE}"]), "extra": {"note": deque([TOKEN_FORM])}}
            self.seen = None

        def log(self, logs, start_time=None):
            self.seen = json.dumps([list(v) for v in (self._logs["prompt"], self._logs["completion"],
                                                       self._logs["extra"]["note"])])

    trainer = Trainer()
    prepare_completions_table(trainer)
    prepare_completions_table(trainer)   # attaching twice wraps once
    trainer.log({"loss": 1.0})
    assert TOKEN_FORM not in trainer.seen and ENV_VALUE not in trainer.seen and "<redacted>" in trainer.seen
    assert '"role": "user", "content": "1+1"' in trainer.seen


def _holders(run_dir: Path, secrets: list[str]) -> list[str]:
    """Every file of the run folder that holds a secret: raw bytes, and parquet tables read back (compressed)."""
    found = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(s.encode() in data for s in secrets):
            found.append(str(path.relative_to(run_dir)))
        elif path.suffix == ".parquet":
            import pandas as pd

            text = pd.read_parquet(path).to_json()
            if any(s in text for s in secrets):
                found.append(f"{path.relative_to(run_dir)} (read)")
    return found


def test_no_file_of_a_real_run_holds_a_secret_of_the_prompt(tmp_path):
    """W&B offline, completions logged (the default logger), checkpoints and the adapter."""
    result = run_cli(["trainer.max_steps=2", "++trainer.save_strategy=steps", "++trainer.save_steps=1",
                      "logger.mode=offline", f"data.system_prompt='{PROMPT}'"], tmp_path / "run",
                     env={"MY_SERVICE_TOKEN": ENV_VALUE})
    assert result.code == 0, result.output[-3000:]
    assert "secrets.prompt" in result.output
    assert TOKEN_FORM not in result.output and ENV_VALUE not in result.output
    run_dir = tmp_path / "run"
    tables = sorted(run_dir.glob("trainer/completions/*.parquet"))
    wandb_tables = sorted(run_dir.glob("wandb/offline-run-*/files/media/table/*.table.json"))
    assert tables and wandb_tables and list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    import pandas as pd

    assert "<redacted>" in pd.read_parquet(tables[0]).to_json()   # the prompt is there, without its secret
    assert _holders(run_dir, [TOKEN_FORM, ENV_VALUE]) == []
    assert _holders(run_dir, ["PlantedSecret"]) == []   # not even a piece: the tiny model's tokenizer never saw it
