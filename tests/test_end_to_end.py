"""The default experiment, for real, on CPU: `python -m r1exp` trains the tiny model with GRPO and learns.

One run (module-scoped) is shared by the assertions below: the run folder of DESIGN.md, the manifest's fields,
a reward that clearly rises from the first 10% of steps to the last 10%, and the accuracy reward with it (the demo
learns the task, not only the format); what the console shows: the live view (plain lines, as in CI or a SLURM
log) instead of TRL's dictionaries, and the closing summary. The run starts from an empty cache, as a fresh
install does: the tiny model is the one shipped with r1exp (r1exp/models/shipped), copied, not warmed up again.
The run evaluates on held-out questions before and after training (eval=heldout, the default), and
`python -m r1exp.eval` scores its adapter and its base model again.
Slow: the same accuracy rise for seeds 1 and 2 (the warm-up recipe must not hold for one seed by luck).
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli

RUN_FILES = ["run.json", "metrics.jsonl", "reward_curve.png", ".hydra/config.yaml", ".hydra/overrides.yaml"]
MANIFEST_KEYS = ["status", "config", "versions", "git", "seed", "device", "start", "end", "metrics"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    result = run_cli([], folder / "run", timeout=900, env={"R1EXP_CACHE": str(folder / "cold_cache")})
    assert result.code == 0, result.output[-4000:]
    return result


def test_a_cold_cache_gets_the_shipped_tiny_model_not_a_warm_up(default_run):
    assert re.search(r"^tiny model: qwen2-\w+ ships with r1exp", default_run.output, re.M), default_run.output[:3000]
    assert "warm-up (learn)" not in default_run.output
    startup = json.loads((default_run.run_dir / "run.json").read_text())["startup"]
    assert startup["model_build_s"] < 5, startup   # a copy of 2.2 MB, where the warm-up took 15-60 s


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


def first_last(run_dir, key: str) -> tuple[float, float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [r[key] for r in rows if "reward" in r]
    k = max(1, len(values) // 10)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def test_accuracy_rises_the_demo_learns_the_task_not_only_the_format(default_run):
    first, last = first_last(default_run.run_dir, "rewards/accuracy/mean")
    assert last >= first + 0.3, f"accuracy did not rise: first 10% {first:.3f}, last 10% {last:.3f}"


def test_the_demo_is_better_on_held_out_questions(default_run):
    """The default run evaluates before and after training on arithmetic questions it never trained on (1 in 6 of the
    task's questions are held out): run.json holds both, metrics.jsonl has the eval/ rows, and training helped."""
    block = json.loads((default_run.run_dir / "run.json").read_text())["eval"]
    baseline, final = block["baseline"], block["final"]
    assert baseline["step"] == 0 and final["step"] == 50 and block["set"]["prompts"] >= 6
    assert block["set"]["overlap"] == 0   # held out of training by construction
    assert final["pass@1"] >= baseline["pass@1"] + 0.2, (baseline, final)
    rows = [json.loads(x) for x in (default_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/pass@1" in r] == [0, 50]
    assert re.search(r"held-out\s+pass@1 [\d.]+ -> [\d.]+ \(\+[\d.]+\) on \d+ prompts", default_run.stdout)


def test_the_eval_command_scores_the_runs_adapter_and_its_base(default_run, tmp_path):
    """`python -m r1exp.eval RUN_DIR` builds the run's model with its engine, loads the trained adapter and scores the
    held-out prompts: greedy decoding gives the run's own final pass@1; --base gives its baseline. The record goes
    into a new folder; the run's folder is left as it was."""
    import subprocess
    import sys

    block = json.loads((default_run.run_dir / "run.json").read_text())["eval"]
    before = sorted(p.name for p in default_run.run_dir.iterdir())
    for flags, expected in (([], block["final"]["pass@1"]), (["--base"], block["baseline"]["pass@1"])):
        out = tmp_path / ("base" if flags else "adapter")
        done = subprocess.run([sys.executable, "-m", "r1exp.eval", str(default_run.run_dir), *flags, "--out", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"pass@1 {expected:.3f} on {block['set']['prompts']} held-out prompts" in done.stdout
        record = json.loads((out / "eval.json").read_text())
        assert record["eval"]["scores"]["pass@1"] == expected and record["run"] == str(default_run.run_dir)
    assert sorted(p.name for p in default_run.run_dir.iterdir()) == before


def test_console_shows_the_live_view_not_trls_dictionaries(default_run):
    out = default_run.stdout
    assert "'loss'" not in default_run.output and "'rewards/accuracy/mean'" not in default_run.output
    # the first step has no ETA yet and shows its own time, warm-up included (r1exp/observe/live.py)
    steps = re.findall(r"^step (\d+)/50 \(\d+%\) \d:\d\d:\d\d(?: eta \d:\d\d:\d\d)? \| reward [\d.-]+ "
                       r"\(accuracy [\d.-]+, format [\d.-]+\) \| length [\d.]+ \| "
                       r"(?:[\d.]+ s/step|first step [\d.]+ s \(warm-up\))$", out, re.M)
    # a line every 5 steps (and one at step 1; a slow machine adds one a minute)
    assert {1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50} <= {int(s) for s in steps} and len(steps) < 25, out[-3000:]
    log = (default_run.run_dir / "train.log").read_text()   # the full dictionaries went to the run's log
    assert len(re.findall(r"^step \d+/50 \{.*\"loss\"", log, re.M)) == 50


def test_run_ends_with_the_closing_summary(default_run):
    run_dir = default_run.run_dir
    closing = default_run.stdout[default_run.stdout.rindex("run ok (exit 0)"):]
    manifest = json.loads((run_dir / "run.json").read_text())
    phases = manifest["phases"]
    assert set(phases) >= {"startup", "checks", "build", "train", "save", "total"} and phases["train"] > 0
    expected = [
        rf"folder\s+{re.escape(str(run_dir))}$",
        rf"wall time\s+{phases['total']:.1f} s \(startup [\d.]+, checks [\d.]+, build [\d.]+, train [\d.]+, save",
        r"steps\s+50 of 50 \(rewards: mean of the first 5 -> the last 5\)$",
        r"reward\s+[\d.]+ -> [\d.]+  \(\+[\d.]+\)$",
        r"^\s+accuracy\s+[\d.]+ -> [\d.]+", r"^\s+format\s+[\d.]+ -> [\d.]+",
        rf"reward curve\s+{re.escape(str(run_dir / 'reward_curve.png'))}$",
        rf"W&B \(offline\)\s+wandb sync {re.escape(str(run_dir))}/wandb/offline-run-\S+$",
        rf"reproduce\s+python -m r1exp.reproduce {re.escape(str(run_dir))}$",
    ]
    for pattern in expected:
        assert re.search(pattern, closing, re.M), f"{pattern!r} not in:\n{closing}"
    assert "run ok (exit 0)" in (run_dir / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_accuracy_rises_for_other_seeds(tmp_path, seed):
    result = run_cli([f"seed={seed}", "logger=none"], tmp_path / "run", timeout=900)
    assert result.code == 0, result.output[-4000:]
    first, last = first_last(result.run_dir, "rewards/accuracy/mean")
    assert last >= first + 0.3, f"seed {seed}: accuracy did not rise: first 10% {first:.3f}, last 10% {last:.3f}"
