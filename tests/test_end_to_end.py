"""The default experiment, for real, on CPU: `python -m r1exp` trains the tiny model with GRPO and learns.

One run (module-scoped) is shared by the assertions below: the run folder of DESIGN.md, the manifest's fields,
and a reward that clearly rises from the first 10% of steps to the last 10%.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

RUN_FILES = ["run.json", "metrics.jsonl", "reward_curve.png", ".hydra/config.yaml", ".hydra/overrides.yaml"]
MANIFEST_KEYS = ["status", "config", "versions", "git", "seed", "device", "start", "end", "metrics"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    result = run_cli([], tmp_path_factory.mktemp("e2e") / "run", timeout=900)
    assert result.code == 0, result.output[-4000:]
    return result


def test_run_folder_has_every_artifact(default_run):
    for name in RUN_FILES:
        assert (default_run.run_dir / name).exists(), name
    adapter = default_run.run_dir / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()


def test_manifest_records_what_ran(default_run):
    manifest = json.loads((default_run.run_dir / "run.json").read_text())
    for key in MANIFEST_KEYS:
        assert key in manifest, key
    assert manifest["status"] == "ok"
    assert manifest["device"] == "cpu"
    assert manifest["config"]["model"]["name_or_path"] == "tiny"
    assert manifest["versions"]["trl"] and manifest["versions"]["torch"]
    assert set(manifest["git"]) >= {"commit", "dirty"}
    assert manifest["end"] >= manifest["start"]


def test_metrics_have_one_line_per_step(default_run):
    manifest = json.loads((default_run.run_dir / "run.json").read_text())
    lines = [json.loads(x) for x in (default_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "reward" in r]
    assert steps == list(range(1, manifest["config"]["trainer"]["max_steps"] + 1))


def test_reward_clearly_rises(default_run):
    metrics = json.loads((default_run.run_dir / "run.json").read_text())["metrics"]
    first, last = metrics["reward_first10"], metrics["reward_last10"]
    assert last >= first + 0.25, f"reward did not rise clearly: first 10% {first:.3f}, last 10% {last:.3f}"


def test_every_step_is_split_into_timed_phases(default_run):
    from test_timing import check_run

    manifest = json.loads((default_run.run_dir / "run.json").read_text())
    check_run(default_run.run_dir, "vllm", manifest["config"]["trainer"]["max_steps"])
