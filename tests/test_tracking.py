"""W&B logging and secrets, as a specification.

One real run of `python -m r1exp` (tiny model, 2 steps, W&B offline) with fake secrets in the environment and on
the command line; its offline W&B files are read back (`r1exp.records.wandb_offline.read_offline_run`: the records
`wandb sync` would upload) and the whole run folder is searched, byte for byte, for the secrets.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from r1exp.records import secrets
from r1exp.observe import tracking
from r1exp.records import metrics
from r1exp.records.wandb_offline import read_offline_run

FAKE_ENV = {
    "WANDB_API_KEY": "wandb-fake-key-4c1d9e0a7b",
    "HF_TOKEN": "hf_fakeTokenValue8842",
    "R1EXP_TEST_DB_PASSWORD": "pw-fake-31337-zz",
    "SOME_SERVICE_SECRET": "svc-fake-secret-0093",
}
FAKE_ON_COMMAND_LINE = "sk-fake-cmdline-7781"


def judge_with_a_key(key: str) -> str:
    """A custom reward whose parameters hold an API key (an LLM judge's), typed on the command line."""
    return f"+reward.judge={{_target_: r1exp.rewards.correctness.numeric_match, weight: 0.0, api_key: {key}}}"


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tracking") / "run"
    # An API key is set, so mode=auto would go online: the test pins offline (no network here).
    result = run_cli(["trainer.max_steps=2", "logger.mode=offline", "logger.tags=[test,offline]",
                      judge_with_a_key(FAKE_ON_COMMAND_LINE)], run_dir, env=FAKE_ENV)
    assert result.code == 0, result.output[-3000:]
    return result


@pytest.fixture(scope="module")
def offline(wandb_run):
    return read_offline_run(wandb_run.run_dir)


# --- secrets ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, secret", [
    ("WANDB_API_KEY", True), ("HF_TOKEN", True), ("hub_token", True), ("GITHUB_TOKEN", True),
    ("logger.api_key", True), ("db_password", True), ("AWS_SECRET_ACCESS_KEY", True), ("OPENAI_API_KEY", True),
    ("client_secret", True), ("HTTP_AUTH", True), ("apikey", True),
    ("pad_token", False), ("eos_token", False), ("num_tokens", False), ("max_tokens", False),
    ("TOKENIZERS_PARALLELISM", False), ("PWD", False), ("sort_key", False), ("answer_field", False),
    ("author", False), ("model.lora.target_modules", False),
])
def test_secret_names(name, secret):
    assert secrets.is_secret_name(name) is secret


@pytest.mark.parametrize("given, expected", [
    ({"logger": {"api_key": "abc123456", "project": "p"}}, {"logger": {"api_key": "<redacted>", "project": "p"}}),
    ({"hub_token": None, "pad_token": "<pad>"}, {"hub_token": None, "pad_token": "<pad>"}),
    ({"token": "${oc.env:HF_TOKEN}"}, {"token": "${oc.env:HF_TOKEN}"}),           # where it comes from: kept
    ({"path": "/data/hf_secretvalue99/x"}, {"path": "/data/<redacted>/x"}),          # an env secret's value: cut
    ({"url": "https://me:hunter2@host/x"}, {"url": "https://me:<redacted>@host/x"}),
    ({"list": ["a", "hf_secretvalue99"]}, {"list": ["a", "<redacted>"]}),
    ({"note": "call with api_key=xyz789 please"}, {"note": "call with api_key=<redacted> please"}),
])
def test_redact(given, expected):
    assert secrets.redact(given, values={"hf_secretvalue99"}) == expected


def test_redact_argv_and_redacted_keys():
    argv = ["r1exp", "+logger.api_key=abc123456", "trainer.beta=0.1", "model.name_or_path=/m/hf_secretvalue99"]
    assert secrets.redact_argv(argv, values={"hf_secretvalue99"}) == [
        "r1exp", "+logger.api_key=<redacted>", "trainer.beta=0.1", "model.name_or_path=/m/<redacted>"]
    assert secrets.redacted_keys({"logger": {"api_key": "<redacted>"}, "a": [1, "<redacted>"]}) == [
        "logger.api_key", "a.1"]


def test_no_secret_is_written_anywhere_in_the_run_folder(wandb_run):
    needles = [v.encode() for v in [*FAKE_ENV.values(), FAKE_ON_COMMAND_LINE]]
    files = [p for p in wandb_run.run_dir.rglob("*") if p.is_file()]
    assert len(files) > 10  # run.json, .hydra/*, metrics, adapter, W&B files...
    leaks = [(str(p.relative_to(wandb_run.run_dir)), n.decode()) for p in files for n in needles
             if n in p.read_bytes()]
    assert leaks == []
    assert FAKE_ON_COMMAND_LINE not in wandb_run.output  # nor in what the run printed


def test_manifest_and_saved_config_show_where_a_secret_was(wandb_run):
    manifest = json.loads((wandb_run.run_dir / "run.json").read_text())
    assert manifest["config"]["reward"]["judge"]["api_key"] == "<redacted>"
    assert judge_with_a_key("<redacted>") in manifest["command"]
    assert FAKE_ON_COMMAND_LINE not in " ".join(manifest["command"])
    hydra_config = (wandb_run.run_dir / ".hydra" / "config.yaml").read_text()
    assert "api_key: <redacted>" in hydra_config
    overrides = (wandb_run.run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "api_key: <redacted>" in overrides and FAKE_ON_COMMAND_LINE not in overrides


# --- W&B -------------------------------------------------------------------------------------------------------

def test_wandb_mode_auto_is_offline_without_an_api_key(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)   # the user's WANDB_MODE would win (tests/test_wandb_connect.py)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert tracking.wandb_mode(OmegaConf.create({"mode": "auto"})) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.wandb_mode(OmegaConf.create({"mode": "auto"})) == "online"
    assert tracking.wandb_mode(OmegaConf.create({"mode": "disabled"})) == "disabled"


def test_wandb_run_has_the_resolved_config_and_the_manifest_facts(wandb_run, offline):
    manifest = json.loads((wandb_run.run_dir / "run.json").read_text())
    assert offline["run"]["id"] == manifest["wandb_id"]
    assert offline["run"]["name"] == wandb_run.run_dir.name
    assert offline["run"]["project"] == "r1exp" and offline["run"]["tags"] == ["test", "offline"]
    config = offline["config"]
    for group in ("model", "loader", "engine", "data", "trainer", "logger"):
        assert config[group] == manifest["config"][group], group
    assert config["trainer"]["max_steps"] == 2
    assert config["r1exp"]["git"] == manifest["git"] and config["r1exp"]["versions"] == manifest["versions"]
    assert config["learning_rate"] == manifest["config"]["trainer"]["learning_rate"]  # TRL's own config update
    assert "<redacted>" in json.dumps(offline["args"]) or offline["args"] == []


def test_wandb_history_holds_every_logged_step(wandb_run, offline):
    steps = metrics.step_rows(metrics.read_metrics(wandb_run.run_dir))
    logged = {row["train/global_step"]: row for row in offline["history"] if "train/reward" in row}
    assert sorted(logged) == [1, 2]
    for row in steps:
        assert logged[row["step"]]["train/reward"] == pytest.approx(row["reward"])
        assert logged[row["step"]]["train/loss"] == pytest.approx(row["loss"])
    assert offline["summary"]["r1exp/status"] == "ok"
    assert offline["summary"]["r1exp/steps_logged"] == 2


def test_completions_are_logged_as_a_table(wandb_run, offline):
    tables = [row for row in offline["history"] if row.get("completions/_type") == "table-file"]
    assert [t["train/global_step"] for t in tables][:2] == [1, 2]
    table_file = next(wandb_run.run_dir.glob("wandb/offline-run-*/files/" + tables[0]["completions/path"]))
    table = json.loads(table_file.read_text())
    assert table["columns"][:3] == ["step", "prompt", "completion"]
    assert {"accuracy", "format", "advantage"} <= set(table["columns"])
    assert len(table["data"]) == tables[0]["completions/nrows"] > 0


def test_adapter_and_config_are_saved_as_a_model_artifact(offline):
    models = [a for a in offline["artifacts"] if a["type"] == "model"]
    assert len(models) == 1
    files = models[0]["files"]
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "config.yaml", "run.json"} <= set(files)
