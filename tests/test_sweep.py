"""Sweeps as a specification: `python -m r1exp -m ...` runs every job, a failed job is listed and does not stop
the others, and the sweep folder ends with summary.md, summary.csv and summary.png.

The default suite runs one real 2x2 multirun on the tiny model (max_steps x resume: the resume=true jobs fail,
as there is nothing to resume, so failures are real and cheap) with W&B offline. The ready sweeps in sweeps/ and
the launcher configs are composed and checked with their documented commands (dry runs). Slow: one job of the
sweep repeated with `python -m r1exp.reproduce`, Ctrl-C stopping a sweep, the real lr x beta grid from sweeps/,
the submitit local launcher, and an Optuna search.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import signal
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from test_resume import interrupted_run
from r1exp import __main__ as entry
from r1exp.config.compose import compose
from r1exp.records.wandb_offline import read_offline_run

FAKE_KEY = "sk-fake-sweep-key-2209"
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
OPTUNA = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                            reason="hydra-optuna-sweeper is not installed (pip install hydra-optuna-sweeper==1.2.0)")


def multirun(args: list[str], sweep_dir: Path, timeout: int = 900):
    """`python -m r1exp -m ARGS` with its sweep folder at sweep_dir."""
    return run_cli(["-m", *args, f"hydra.sweep.dir={sweep_dir}"], sweep_dir, timeout=timeout)


def read_csv(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "summary.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep") / "grid"
    result = multirun(["trainer.max_steps=1,2", "resume=false,true", "logger.mode=offline",
                       f"+reward.judge={{_target_: r1exp.rewards.correctness.numeric_match, weight: 0.0, "
                       f"api_key: {FAKE_KEY}}}"], sweep_dir)   # a custom reward's key (an LLM judge's)
    return result


# --- a real 2x2 multirun with failed jobs ------------------------------------------------------------------------

def test_every_job_runs_and_the_sweep_exit_status_is_the_worst_jobs(grid):
    assert grid.code == 2, grid.output[-3000:]  # the resume=true jobs are usage errors (exit 2); the others ran
    statuses = {p.name: json.loads((p / "run.json").read_text())["status"] for p in grid.run_dir.iterdir()
                if (p / "run.json").exists()}
    assert statuses == {"0": "ok", "1": "failed", "2": "ok", "3": "failed"}
    assert "sweep: 2/4 jobs ok" in grid.output


def test_summary_csv_has_every_job_with_its_overrides_status_and_final_metrics(grid):
    rows = read_csv(grid.run_dir)
    assert [(r["job"], r["trainer.max_steps"], r["resume"].lower(), r["status"]) for r in rows] == [
        ("0", "1", "false", "ok"), ("1", "1", "true", "failed"),
        ("2", "2", "false", "ok"), ("3", "2", "true", "failed")]
    for row in rows:
        manifest = json.loads((grid.run_dir / row["folder"] / "run.json").read_text())
        assert int(row["exit_code"]) == manifest["exit_code"]
        if row["status"] == "ok":
            assert float(row["final/reward"]) == pytest.approx(manifest["metrics"]["final/reward"])
            assert int(row["steps_logged"]) == int(row["trainer.max_steps"])
        else:
            assert "no checkpoint to continue from" in row["error"]
            assert row["final/reward"] == ""


def test_summary_md_is_a_table_that_lists_failed_jobs(grid):
    text = (grid.run_dir / "summary.md").read_text()
    table = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(table) == 4
    assert [line.split("|")[4].strip() for line in table] == ["ok", "failed", "ok", "failed"]
    assert "## Not ok" in text and text.count("no checkpoint to continue from") == 2
    assert "Best by reward_last10" in text


def test_no_secret_is_written_anywhere_in_the_sweep_folder(grid):
    files = [p for p in grid.run_dir.rglob("*") if p.is_file()]
    assert (grid.run_dir / "multirun.yaml") in files and len(files) > 20
    assert [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()] == []


def test_summary_png_plots_the_reward_curves(grid):
    png = (grid.run_dir / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_jobs_of_a_sweep_share_one_wandb_group(grid):
    runs = [read_offline_run(grid.run_dir / job) for job in ("0", "2")]
    group = f"{grid.run_dir.parent.name}_{grid.run_dir.name}"
    assert [r["run"]["group"] for r in runs] == [group, group]
    assert [r["run"]["name"] for r in runs] == [f"{grid.run_dir.name}-0", f"{grid.run_dir.name}-2"]


def test_the_sweep_ends_with_the_best_job_and_the_summary_path_and_each_job_with_its_own(grid):
    manifests = {n: json.loads((grid.run_dir / n / "run.json").read_text()) for n in ("0", "2")}
    # ranked by the final held-out pass@1 (eval=heldout, the default), ties by the training reward
    ok = {n: (((m.get("eval") or {}).get("final") or {}).get("pass@1") or 0.0, m["metrics"]["reward_last10"])
          for n, m in manifests.items()}
    best = max(ok, key=ok.get)
    closing = grid.stdout[grid.stdout.rindex("sweep: 2/4 jobs ok"):]
    assert re.search(rf"best\s+job {best} \(trainer.max_steps=", closing), closing
    assert str(grid.run_dir / "summary.md") in closing and str(grid.run_dir / "summary.png") in closing
    assert re.search(r"job 1\s+failed, exit 2: .*no checkpoint to continue from", closing)
    assert grid.stdout.count("run ok (exit 0)") == 2 and grid.stdout.count("run failed (exit 2)") == 2
    assert "step 2/2 (100%)" in grid.stdout and "'loss'" not in grid.output  # jobs print plain live lines


def test_runs_lists_the_sweeps_jobs_and_compares_two_of_them(grid, tmp_path):
    env = {"COLUMNS": "300"}
    listed = run_cli([str(grid.run_dir.parent)], grid.run_dir, module="r1exp.runs", env=env, timeout=120)
    assert listed.code == 0, listed.output
    rows = {re.search(r"grid/\d\b", line).group(): line for line in listed.stdout.splitlines()
            if re.search(r"grid/\d\b", line)}
    assert sorted(rows) == ["grid/0", "grid/1", "grid/2", "grid/3"]
    assert "ok" in rows["grid/0"] and "trainer.max_steps=1 resume=false" in rows["grid/0"]
    assert "failed" in rows["grid/3"] and "trainer.max_steps=2 resume=true" in rows["grid/3"]
    assert FAKE_KEY not in listed.output
    assert re.search(r"sweep grid: 2/4 jobs ok, best job \d", listed.stdout)
    png = tmp_path / "compare.png"
    compared = run_cli(["compare", str(grid.run_dir / "0"), str(grid.run_dir / "2"), "-o", str(png)], grid.run_dir,
                       module="r1exp.runs", env=env, timeout=120)
    assert compared.code == 0, compared.output
    diff = [line for line in compared.stdout.splitlines() if "trainer.max_steps" in line]
    assert len(diff) == 1 and re.search(r"trainer.max_steps\W+1\W+2\W", diff[0]), compared.stdout
    assert "learning_rate" not in compared.stdout  # only the keys that differ
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"reward curves: {png}" in compared.stdout


@pytest.mark.slow
def test_one_job_of_a_sweep_is_reproduced(grid, tmp_path):
    new_dir = tmp_path / "again"
    result = run_cli([str(grid.run_dir / "0"), f"hydra.run.dir={new_dir}"], new_dir, module="r1exp.reproduce")
    assert result.code == 0, result.output[-3000:]
    assert "identical at every one of 1 steps" in result.output
    assert json.loads((new_dir / "run.json").read_text())["reproduction"]["of"] == str(grid.run_dir / "0")


# --- ready sweeps and launchers ------------------------------------------------------------------------------------

def documented_command(path: Path) -> list[str]:
    """The command a sweep file's header documents (`#   python -m r1exp -m ...`), without `python -m r1exp`."""
    lines = [line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    command = next(line for line in lines if line.startswith("python -m r1exp -m"))
    return command.split()[3:]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=[OPTUNA] if "optuna" in p.stem else [])
                                  for p in SWEEPS])
def test_every_ready_sweep_passes_the_checks_with_its_documented_command(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the documented commands run from the repository root (-cd sweeps)
    args = documented_command(path)
    assert args[:4] == ["-m", "-cd", "sweeps", "-cn"] and args[4] == path.stem
    assert entry.main([*args, "dry_run=true"]) == 0, capsys.readouterr().err[-3000:]


def test_the_sweep_files_sweep_what_their_names_say():
    params = {p.stem: compose([], p.stem, ROOT / "sweeps", return_hydra_config=True).hydra.sweeper.params
              for p in SWEEPS if "optuna" not in p.stem}
    assert set(params["lr_beta"]) == {"trainer.learning_rate", "trainer.beta"}
    assert params["engines"]["engine"] == "hf,vllm"
    assert "[accuracy]" in params["reward_ablation"]["reward"]


@pytest.mark.parametrize("launcher, target, keys", [
    ("slurm", "SlurmLauncher", {"partition", "gpus_per_node", "timeout_min", "setup"}),
    ("local", "LocalLauncher", {"timeout_min", "gpus_per_node"}),
])
def test_launcher_configs_compose(launcher, target, keys):
    cfg = compose([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert keys <= set(cfg.hydra.launcher)


# --- slow: the real grid, submitit, Optuna ------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_after_checkpointing_the_running_job(tmp_path):
    sweep_dir = tmp_path / "stopped"
    args = ("-m", "trainer.max_steps=8", "trainer.learning_rate=1e-3,2e-3", "logger=none",
            f"hydra.sweep.dir={sweep_dir}")
    code, output = interrupted_run(sweep_dir, signal.SIGINT, args, watch=sweep_dir / "0")
    assert code == 130, output[-3000:]
    assert not (sweep_dir / "1").exists()  # the next job did not start
    rows = read_csv(sweep_dir)
    assert [(r["job"], r["status"], r["exit_code"]) for r in rows] == [("0", "interrupted", "130")]
    assert json.loads((sweep_dir / "0" / "run.json").read_text())["checkpoint"]


@pytest.mark.slow
def test_lr_beta_grid_from_sweeps(tmp_path):
    sweep_dir = tmp_path / "lr_beta"
    result = multirun(["-cd", "sweeps", "-cn", "lr_beta", "trainer.learning_rate=1e-3,2e-3", "trainer.max_steps=3",
                       "logger=none"], sweep_dir)
    assert result.code == 0, result.output[-3000:]
    rows = read_csv(sweep_dir)
    assert {(r["trainer.learning_rate"], r["trainer.beta"]) for r in rows} == {
        ("0.001", "0.0"), ("0.002", "0.0"), ("0.001", "0.04"), ("0.002", "0.04")}
    assert all(r["status"] == "ok" and r["steps_logged"] == "3" for r in rows)
    for row in rows:  # each job ran with its own settings
        config = json.loads((sweep_dir / row["folder"] / "run.json").read_text())["config"]["trainer"]
        assert (config["learning_rate"], config["beta"]) == (float(row["trainer.learning_rate"]),
                                                             float(row["trainer.beta"]))


@pytest.mark.slow
def test_submitit_local_launcher_runs_jobs_in_their_own_processes(tmp_path):
    sweep_dir = tmp_path / "submitit"
    result = multirun(["hydra/launcher=local", "trainer.max_steps=1", "trainer.learning_rate=1e-3,2e-3",
                       "logger=none"], sweep_dir)
    assert result.code == 0, result.output[-3000:]
    assert (sweep_dir / ".submitit").is_dir()
    assert {json.loads((sweep_dir / j / "run.json").read_text())["status"] for j in ("0", "1")} == {"ok"}
    assert len(read_csv(sweep_dir)) == 2


@pytest.mark.slow
@OPTUNA
def test_optuna_search_returns_the_metric_and_summarises(tmp_path):
    sweep_dir = tmp_path / "optuna"
    result = multirun(["-cd", "sweeps", "-cn", "optuna_lr", "hydra.sweeper.n_trials=2", "trainer.max_steps=2",
                       "logger=none"], sweep_dir)
    assert result.code == 0, result.output[-3000:]
    best = (sweep_dir / "optimization_results.yaml").read_text()
    rows = read_csv(sweep_dir)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert f"best_value: {max(float(r['reward_last10']) for r in rows)}" in best
