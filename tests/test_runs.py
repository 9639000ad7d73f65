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
