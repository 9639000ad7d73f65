"""run_state(run_dir): a run that was killed is `dead`, not `running` forever (pid + start time on this machine,
heartbeat for another machine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ROOT
from r1exp.records import manifest
from r1exp.records.manifest import Manifest, process_started, run_state

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
HERE = socket.gethostname()


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


ME = os.getpid()
CASES = [
    ("finished", {"status": "ok"}, "ok"),
    ("failed", {"status": "failed"}, "failed"),
    ("interrupted", {"status": "interrupted"}, "interrupted"),
    ("this machine, process alive", {"status": "running", "host": HERE, "pid": ME, "heartbeat": ago(9999)}, "running"),
    ("this machine, process gone", {"status": "running", "host": HERE, "pid": "DEAD", "heartbeat": ago(1)}, "dead"),
    ("this machine, pid reused", {"status": "running", "host": HERE, "pid": ME, "pid_started": 1.0,
                                  "heartbeat": ago(1)}, "dead"),
    ("other machine, fresh heartbeat", {"status": "running", "host": "node-7", "pid": 1, "heartbeat": ago(60)},
     "running"),
    ("other machine, stale heartbeat", {"status": "running", "host": "node-7", "pid": 1, "heartbeat": ago(3600)},
     "dead"),
    ("no such status", {"status": "weird"}, "unknown"),
]


@pytest.mark.parametrize("data,state", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_run_state(tmp_path, data, state):
    data = {**data, "pid": dead_pid() if data.get("pid") == "DEAD" else data.get("pid")}
    if data.get("pid") == ME and "pid_started" not in data:
        data["pid_started"] = process_started(ME)
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert run_state(tmp_path, now_ts=NOW.timestamp()) == state


@pytest.mark.parametrize("content", [None, '{"status": "runn', "[1, 2]"], ids=["missing", "cut short", "not a dict"])
def test_an_unreadable_run_json_is_unknown(tmp_path, content):
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    assert run_state(tmp_path) == "unknown"


def test_a_running_manifest_beats_and_stops_beating_when_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "HEARTBEAT_S", 0.05)
    m = Manifest(tmp_path, {"a": 1}, seed=1, device="cpu")
    first = json.loads((tmp_path / "run.json").read_text())
    assert (first["pid"], first["host"], first["status"]) == (os.getpid(), HERE, "running")
    assert run_state(tmp_path) == "running"
    m.data["heartbeat"] = "2000-01-01T00:00:00+00:00"
    deadline = time.monotonic() + 10
    while json.loads((tmp_path / "run.json").read_text())["heartbeat"].startswith("2000"):
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.02)
    m.finish("ok")
    assert run_state(tmp_path) == "ok"
    time.sleep(0.2)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "ok"   # no beat rewrites it after the end


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_dead(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "r1exp", "logger=none", "engine=hf", f"hydra.run.dir={run_dir}"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while run_state(run_dir) != "running":
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert run_state(run_dir) == "dead"
