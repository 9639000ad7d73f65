"""Run folders are claimed atomically (r1exp.records.run_folder): never shared, never overwritten, resumed only on purpose.

Claims are made the way `python -m r1exp` makes them (after preflight, before Hydra writes anything); concurrent
claims run in separate processes started at the same moment.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import r1exp.__main__ as entry
from r1exp.records import run_folder
from r1exp.config.compose import parse_command_line
from r1exp.records.manifest import run_state


def claim(*argv: str):
    argv = list(argv)
    return run_folder.claim(argv, parse_command_line(argv))


def _claim_in_process(args):
    barrier, cwd, argv = args
    os.chdir(cwd)
    barrier.wait()
    c = run_folder.claim(argv, parse_command_line(argv))
    return str(c.folder) if c else None


def test_runs_started_together_with_one_name_get_folders_of_their_own(tmp_path):
    n = 6
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            folders = pool.map(_claim_in_process, [(barrier, str(tmp_path), ["name=same", "hydra.run.dir=out/${name}"])] * n)
    assert None not in folders and len(set(folders)) == n
    assert sorted(Path(f).name for f in folders) == sorted(["same"] + [f"same_{i}" for i in range(2, n + 1)])
    for f in folders:
        owner = json.loads((tmp_path / f / run_folder.CLAIM_FILE).read_text())
        assert owner["host"] == socket.gethostname()


def test_the_default_folder_pattern_is_claimed_and_gets_a_suffix_when_taken(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = claim("name=x", "hydra.run.dir=outputs/runs/${name}")
    second = claim("name=x", "hydra.run.dir=outputs/runs/${name}")
    assert (first.folder, second.folder) == (Path("outputs/runs/x"), Path("outputs/runs/x_2"))
    assert "hydra.run.dir='outputs/runs/x_2'" in second.argv   # Hydra is handed the claimed folder, resolved
    assert not any(a.startswith("hydra.run.dir=outputs/runs/$") for a in second.argv)


def finished_run(folder: Path, status: str = "ok", **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"status": status, "host": socket.gethostname(), "pid": 1, "heartbeat": "2026-01-01T00:00:00+00:00",
            "config": {}, **fields}
    (folder / "run.json").write_text(json.dumps(data))
    (folder / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n')
    return folder


def run_main(argv, monkeypatch) -> tuple[int, str]:
    """`python -m r1exp ARGV` in-process, stopped before Hydra would run a job."""
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main(argv)
    return code, out.getvalue()


@pytest.mark.parametrize("kind", ["finished run", "claimed, not started", "sweep"])
def test_a_folder_that_holds_a_run_is_never_reused(tmp_path, monkeypatch, kind):
    folder = tmp_path / "old"
    if kind == "finished run":
        finished_run(folder)
    elif kind == "claimed, not started":
        folder.mkdir()
        (folder / run_folder.CLAIM_FILE).write_text("{}")
    else:
        finished_run(folder / "0")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, output = run_main(["logger=none", f"hydra.run.dir={folder}"], monkeypatch)
    assert code == 2, output
    assert "already holds a run" in output and f"python -m r1exp.reproduce {folder}" in output
    assert "Traceback" not in output
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_new_or_empty_folder_named_on_the_command_line_is_claimed(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "new" / "deep"):
        c = claim(f"hydra.run.dir={folder}")
        assert c.folder == folder and (folder / run_folder.CLAIM_FILE).exists()


def test_a_claimed_folder_no_run_started_in_is_given_back(tmp_path):
    folder = tmp_path / "a" / "b"
    with claim(f"hydra.run.dir={folder}"):
        assert folder.is_dir()
    assert not (tmp_path / "a").exists()   # Hydra never got to run: nothing is left behind


def test_a_name_too_long_for_the_file_system_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = run_main(["logger=none", "name=" + "x" * 300], monkeypatch)
    assert code == 2 and "too long" in output and "shorter name=" in output and "Traceback" not in output


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_resume_reuses_its_folder_only_when_the_run_is_not_running(tmp_path, monkeypatch):
    folder = finished_run(tmp_path / "run", status="running", pid=os.getpid())   # this process: alive
    code, output = run_main([f"hydra.run.dir={folder}", "resume=true", "logger=none"], monkeypatch)
    assert code == 2 and "still running" in output and f"pid {os.getpid()}" in output

    finished_run(folder, status="running", pid=dead_pid())   # killed: run.json still says running
    checkpoint = folder / "trainer" / "checkpoint-1"             # after a step it saved
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 1}')
    assert run_state(folder) == "dead"
    c = claim(f"hydra.run.dir={folder}", "resume=true")
    assert c.folder == folder and (folder / f"{run_folder.CLAIM_FILE}.resume1").exists()
    code, output = run_main([f"hydra.run.dir={folder}", "resume=true", "logger=none"], monkeypatch)
    assert code == 2 and "another resume" in output   # two resumes of one run cannot both go on


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path, monkeypatch):
    code, output = run_main([f"hydra.run.dir={tmp_path / 'nothing'}", "resume=true", "logger=none"], monkeypatch)
    assert code == 2 and "no run to continue" in output
    assert not (tmp_path / "nothing").exists()
