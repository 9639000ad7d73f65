"""`python -m r1exp.runs`: bad input gets a clear message and exit status 2, never a traceback. The list and the
comparison of real run folders (a real sweep's jobs) are checked in test_sweep.py."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

MANIFEST = {"status": "ok", "exit_code": 0, "start": "2026-11-25T10:31:07+00:00", "config": {"name": "default",
            "trainer": {"learning_rate": 0.001}}, "metrics": {"reward_first10": 0.3, "reward_last10": 1.2}}


def runs_cli(*args, cwd=None):
    return run_cli(list(args), cwd or "", module="r1exp.runs", timeout=120, env={"COLUMNS": "250"}, cwd=cwd)


def make_run(folder, manifest=MANIFEST, text=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(text if text is not None else json.dumps(manifest))
    return folder


@pytest.fixture
def root(tmp_path):
    runs = tmp_path / "outputs" / "runs" / "2026-11-25"
    make_run(runs / "10-31-07_default")
    make_run(runs / "10-40-00_cut", text=json.dumps(MANIFEST)[:40])  # killed while writing run.json
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["compare", "{root}/nowhere", "{root}/outputs/runs/2026-11-25/10-31-07_default"], "nowhere: no such folder"),
    (["compare", "{root}/empty", "{root}/outputs/runs/2026-11-25/10-31-07_default"], "not a run folder (no run.json)"),
    (["compare", "{root}/outputs/runs/2026-11-25/10-40-00_cut", "{root}/outputs/runs/2026-11-25/10-31-07_default"],
     "run.json cannot be read"),
    (["compare", "{root}/outputs/runs/2026-11-25/10-31-07_default"], "give at least two run folders"),
    (["compare"], "the following arguments are required: RUN"),
    (["{root}/nowhere"], "nowhere: no such folder"),
    (["{root}/outputs/runs/2026-11-25/10-31-07_default/run.json"], "not a folder"),
])
def test_bad_input_is_a_clear_message_and_exit_2(root, args, message):
    result = runs_cli(*(a.format(root=root) for a in args))
    assert result.code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_list_shows_an_unreadable_run_json_and_goes_on(root):
    result = runs_cli(str(root / "outputs"))
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    ok = next(line for line in lines if "10-31-07_default" in line)
    assert "ok" in ok and "default" in ok and "0.30 -> 1.20" in ok
    cut = next(line for line in lines if "10-40-00_cut" in line)
    assert "unreadable" in cut and "run.json cannot be read" in cut


def test_no_runs_yet(tmp_path):
    (tmp_path / "outputs").mkdir()
    result = runs_cli(cwd=tmp_path)
    assert result.code == 0 and "no runs under outputs (start one with: python -m r1exp)" in result.output


def make_trained_run(folder, lr, rewards):
    make_run(folder, {**MANIFEST, "config": {"name": "default", "trainer": {"learning_rate": lr}}})
    rows = [{"step": i + 1, "reward": r, "rewards/accuracy/mean": r / 2, "rewards/format/mean": r / 2}
            for i, r in enumerate(rewards)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_compare_writes_its_png_next_to_the_first_run_and_says_where_never_into_the_current_folder(tmp_path):
    day = tmp_path / "outputs" / "runs" / "2026-11-25"
    a = make_trained_run(day / "10-31-07_default", 1e-3, [0.2, 0.5, 0.9])
    b = make_trained_run(day / "11-02-13_default", 2e-3, [0.1, 0.3, 0.4])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = runs_cli("compare", str(a), str(b), cwd=elsewhere)
    assert result.code == 0, result.output
    png = day / "reward_compare_10-31-07_default_vs_11-02-13_default.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert f"reward curves: {png}" in result.stdout.replace("\n", "")
    assert list(elsewhere.iterdir()) == []      # before: reward_compare.png in the current folder
    assert "trainer.learning_rate" in result.stdout


def test_compare_out_writes_there_and_prints_the_full_path(tmp_path):
    day = tmp_path / "outputs" / "runs" / "2026-11-25"
    a = make_trained_run(day / "10-31-07_default", 1e-3, [0.2, 0.5])
    b = make_trained_run(day / "11-02-13_default", 2e-3, [0.1, 0.3])
    result = runs_cli("compare", str(a), str(b), "-o", "plots/lr.png", cwd=tmp_path)
    assert result.code == 0, result.output
    assert (tmp_path / "plots" / "lr.png").is_file()
    assert f"reward curves: {tmp_path / 'plots' / 'lr.png'}" in result.stdout.replace("\n", "")


def test_compare_of_two_jobs_of_a_sweep_writes_into_the_sweep_folder(tmp_path):
    from r1exp import runs

    sweep = tmp_path / "outputs" / "sweeps" / "2026-11-25" / "12-00-00_lr"
    jobs = [runs.load_run(make_trained_run(sweep / str(n), lr, [0.1, 0.2])) for n, lr in enumerate((1e-3, 2e-3))]
    png = runs.default_png(jobs)
    assert png == sweep / "reward_compare_12-00-00_lr-0_vs_12-00-00_lr-1.png"
    many = [runs.load_run(make_trained_run(sweep / f"{n:02d}_{'x' * 40}", 1e-3, [0.1])) for n in range(6)]
    assert runs.default_png(many).name == f"reward_compare_00_{'x' * 40}_vs_5_runs.png"


def test_a_killed_run_is_listed_as_dead(tmp_path):
    """run.json still says `running`, but its process is gone (SIGKILL, a dead node): the list says `dead`."""
    import socket

    make_run(tmp_path / "outputs" / "runs" / "2026-01-01" / "00-00-00_killed",
             {**MANIFEST, "status": "running", "pid": 2 ** 22 + 7, "host": socket.gethostname(),
              "heartbeat": "2026-01-01T00:00:00+00:00", "start": "2026-01-01T00:00:00+00:00"})
    result = runs_cli(cwd=tmp_path)
    assert result.code == 0 and "dead" in result.stdout and "running" not in result.stdout, result.stdout
