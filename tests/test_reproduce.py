"""Reproduction as a specification: `python -m r1exp.reproduce RUN_DIR` runs the saved config again into a new
folder, reports drift, and says whether the metrics are identical step for step (exit 0) or where they diverge
(exit 1).

The default suite reproduces a real 3-step run of the default config on CPU and requires bit-identical metrics;
comparison and drift are specified as tables. Slow: a changed learning rate diverges, and engine=vllm repeats too.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from r1exp import reproduce, tracking


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reproduce") / "original"
    result = run_cli(["trainer.max_steps=3", "logger=none"], run_dir)
    assert result.code == 0, result.output[-3000:]
    return run_dir


def reproduce_cli(*args, new_dir, **kwargs):
    return run_cli([*map(str, args), f"hydra.run.dir={new_dir}"], new_dir, module="r1exp.reproduce", **kwargs)


def test_the_default_run_repeats_bit_for_bit_on_cpu(original, tmp_path):
    result = reproduce_cli(original, new_dir=tmp_path / "again")
    assert result.code == 0, result.output[-3000:]
    assert "metrics: identical at every one of 3 steps" in result.output
    old = tracking.step_rows(tracking.read_metrics(original))
    new = tracking.step_rows(tracking.read_metrics(tmp_path / "again"))
    assert [r["step"] for r in new] == [1, 2, 3]
    assert [r["reward"] for r in new] == [r["reward"] for r in old] and [r["loss"] for r in new] == [
        r["loss"] for r in old]
    record = json.loads((tmp_path / "again" / "run.json").read_text())["reproduction"]
    assert record["of"] == str(original) and record["comparison"]["identical"] is True
    assert record["exit_code"] == 0
    # Packages, Python and device are the same; only the code may have moved (others edit this checkout).
    assert [line for line in record["drift"] if not line.startswith("code ")] == []
    assert "drift:" in result.output


def test_the_saved_config_is_read_from_yaml(original):
    config = reproduce.saved_config(original)
    assert config["trainer"]["max_steps"] == 3 and config["logger"]["name"] == "none"
    assert (original / ".hydra" / "config.yaml").exists()


@pytest.mark.parametrize("args, message", [
    (["engine=vllm"], "no groups to choose from"),
    (["--fast"], "usage: python -m r1exp.reproduce RUN_DIR"),
])
def test_usage_mistakes_exit_2_without_a_new_folder(original, tmp_path, args, message):
    result = reproduce_cli(original, *args, new_dir=tmp_path / "new")
    assert result.code == 2 and message in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "new").exists()


def test_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = reproduce_cli(tmp_path, new_dir=tmp_path / "new")
    assert result.code == 2 and "not an r1exp run folder" in result.stderr


# --- comparison and drift as tables ---------------------------------------------------------------------------------

def rows(*rewards, **extra):
    return [{"step": i + 1, "reward": r, "loss": 0.1 * i, "step_time": 1.0 + i, **extra} for i, r in enumerate(rewards)]


@pytest.mark.parametrize("old, new, atol, identical, first_step", [
    (rows(0.5, 0.6), rows(0.5, 0.6), 0.0, True, None),
    (rows(0.5, 0.6), [{**r, "step_time": 99.0} for r in rows(0.5, 0.6)], 0.0, True, None),  # timings ignored
    (rows(0.5, 0.6), rows(0.5, 0.6000001), 0.0, False, 2),
    (rows(0.5, 0.6), rows(0.5, 0.6000001), 1e-6, True, None),
    (rows(0.5, 0.6), rows(0.4, 0.6), 0.0, False, 1),
    (rows(0.5, 0.6), rows(0.5), 0.0, False, None),                   # fewer steps: not identical
    (rows(float("nan")), rows(float("nan")), 0.0, True, None),        # nan equals nan here
    (rows(0.5, extra_key=1), rows(0.5), 0.0, False, 1),                # a metric missing
])
def test_compare(old, new, atol, identical, first_step):
    result = reproduce.compare(old, new, atol)
    assert result.identical is identical
    assert (result.first or {}).get("step") == first_step
    text = reproduce.render(result, atol)
    assert ("diverge from step" in text) == (first_step is not None)


BASE = {"versions": {"trl": "1.16.0", "torch": "2.13.0"}, "python": "3.11.9", "device": "cpu",
        "git": {"commit": "a" * 40, "dirty": False, "diff_sha256": None}}


@pytest.mark.parametrize("change, expected", [
    ({}, []),
    ({"versions": {"trl": "1.17.0", "torch": "2.13.0"}}, ["trl 1.16.0 -> 1.17.0"]),
    ({"versions": {"trl": "1.16.0", "torch": "2.13.0", "vllm": "0.31.0"}}, ["vllm absent -> 0.31.0"]),
    ({"python": "3.12.1"}, ["python 3.11.9 -> 3.12.1"]),
    ({"device": "cuda x1"}, ["device cpu -> cuda x1"]),
    ({"git": {"commit": "b" * 40, "dirty": False, "diff_sha256": None}}, ["code aaaaaaaaaa -> bbbbbbbbbb"]),
    ({"git": {"commit": "a" * 40, "dirty": True, "diff_sha256": "f00d"}},
     ["code aaaaaaaaaa -> aaaaaaaaaa (uncommitted changes f00d)"]),
])
def test_drift(change, expected):
    assert reproduce.drift(BASE, {**BASE, **change}) == expected


# --- slow ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_changed_learning_rate_shows_where_the_runs_diverge(original, tmp_path):
    saved_lr = reproduce.saved_config(original)["trainer"]["learning_rate"]
    result = reproduce_cli(original, f"trainer.learning_rate={saved_lr * 10}", new_dir=tmp_path / "changed")
    assert result.code == 1, result.output[-3000:]
    assert "metrics diverge from step 1" in result.output
    assert f"learning_rate: {saved_lr!r} (saved) vs {saved_lr * 10!r} (new)" in result.output
    record = json.loads((tmp_path / "changed" / "run.json").read_text())["reproduction"]
    assert record["comparison"]["identical"] is False
    assert record["overrides"] == [f"trainer.learning_rate={saved_lr * 10}"]


@pytest.mark.slow
def test_engine_vllm_repeats_bit_for_bit_on_cpu(tmp_path):
    run_dir = tmp_path / "vllm"
    first = run_cli(["engine=vllm", "trainer.max_steps=3", "logger=none"], run_dir)
    assert first.code == 0, first.output[-3000:]
    result = reproduce_cli(run_dir, new_dir=tmp_path / "vllm-again")
    assert result.code == 0, result.output[-3000:]
    assert "metrics: identical at every one of 3 steps" in result.output
