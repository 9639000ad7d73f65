"""The process behind engine=vllm_server: a vLLM server that r1exp starts and stops itself, or one it attaches to.
The command (`vllm serve` or, for a TRL before 1.11, `trl vllm-serve`) comes from r1exp.engines.vllm_server.

engine.launch=true: the server is started on engine.gpus (CUDA_VISIBLE_DEVICES) in a process group of its own,
its output goes to `<run dir>/vllm_server.log`, and r1exp waits until `GET /health` answers 200, at most
engine.timeout_s seconds. It is stopped (SIGTERM to the group, SIGKILL after a grace period) when the run ends:
normally, on an error, on Ctrl-C, and on SIGTERM (turned into an exception while the server runs, so the cleanup
runs). engine.launch=false: the server at engine.host:engine.port must answer within engine.timeout_s.

A server that does not answer, or exits before it answers, is a ConfigError (one readable block, exit 2) naming
the URL, the time waited and, for a launched server, the end of its log. Where TRL syncs weights through vLLM's
weight-transfer engine (spec.weight_transfer), a healthy server is also asked for its configuration
(GET /server_info): a server without its dev-mode endpoints (VLLM_SERVER_DEV_MODE=1) or without
--weight-transfer-config is a ConfigError too, before the trainer is built, instead of TRL's error at its first
weight sync. Weight sync to a server needs CUDA (TRL's NCCL weight transfer): the checker says so for CPU before a run
gets here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from r1exp.errors import ConfigError, Problem

POLL_S = 0.5
STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 15
TRL_CLI = "import sys; from trl.cli import main; sys.exit(main())"   # the `trl` console script, any install layout
VLLM_CLI = (sys.executable, "-m", "vllm.entrypoints.cli.main")       # the `vllm` console script, any install layout


@dataclass
class ServerSpec:
    host: str
    port: int
    timeout_s: float
    command: list = field(default_factory=list)   # empty: attach to a running server
    env: dict = field(default_factory=dict)        # added to the environment of a launched server
    weight_transfer: bool = False                  # check that the server has vLLM's weight-transfer engine
    start_hint: str = ""                           # attach: how to start a server by hand (for the error message)
    pid: int | None = None                         # a launched server's process (and process group) id

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


def shown_command(command: list, env: dict | None = None) -> str:
    """A launch command as a person would type it: `vllm ...` / `trl ...` for the console scripts, env first."""
    command = list(command)
    if tuple(command[:3]) == VLLM_CLI:
        command = ["vllm", *command[3:]]
    elif command[:3] == [sys.executable, "-c", TRL_CLI]:
        command = ["trl", *command[3:]]
    return shlex.join([f"{k}={v}" for k, v in (env or {}).items()] + command)


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until_healthy(spec: ServerSpec, process: subprocess.Popen | None = None, log_path: Path | None = None):
    """Return once GET /health answers 200; raise ConfigError when the time is up or the process has exited."""
    deadline = time.monotonic() + spec.timeout_s
    while True:
        if is_healthy(spec.url):
            return
        if process is not None and process.poll() is not None:
            raise ConfigError([Problem(
                "engine.launch", True,
                f"the vLLM server exited with status {process.returncode} before {spec.url}/health answered; "
                f"its log ends with:\n{_tail(log_path)}",
                f"read {log_path}; check engine.gpus, engine.gpu_memory_utilization and the GPU install (docs/gpu.md)",
                rule="engine.server.exited")])
        if time.monotonic() >= deadline:
            launched = process is not None
            raise ConfigError([Problem(
                "engine.timeout_s" if launched else "engine.port", spec.timeout_s if launched else spec.port,
                f"no vLLM server answered {spec.url}/health within {spec.timeout_s:g} s",
                (f"a large model may need longer: raise engine.timeout_s; its log is {log_path}" if launched else
                 f"start one ({spec.start_hint or 'vllm serve MODEL --port ...'}), set engine.host/engine.port to "
                 "where it runs, or let r1exp start it: engine.launch=true"),
                rule="engine.server.unreachable")])
        time.sleep(POLL_S)


def weight_transfer_problems(spec: ServerSpec, timeout: float = 10.0) -> list[Problem]:
    """What keeps TRL from syncing weights into the healthy server at spec.url (vLLM's own server, TRL >= 1.11):
    TRL reads GET /server_info (dev mode only) and needs a weight_transfer_config there."""
    url = f"{spec.url}/server_info?config_format=json"
    restart = ("restart it as r1exp would: " + spec.start_hint) if spec.start_hint else "report this with the log"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            config = json.loads(response.read()).get("vllm_config") or {}
    except urllib.error.HTTPError as e:
        if e.code != 404:
            return [Problem("engine.port", spec.port, f"{url} answered HTTP {e.code}: the server's configuration, "
                            "which tells whether TRL can sync weights into it, is unreadable", restart,
                            rule="engine.server.weight_transfer")]
        return [Problem("engine.port", spec.port,
                        f"the vLLM server at {spec.url} has no development endpoints (GET /server_info answers 404): "
                        "TRL sends the trainer's weights through them (/init_weight_transfer_engine, /update_weights)",
                        f"start it with VLLM_SERVER_DEV_MODE=1 in its environment; {restart}",
                        rule="engine.server.dev_mode")]
    except (urllib.error.URLError, OSError, ValueError) as e:
        return [Problem("engine.port", spec.port, f"{url} did not answer ({e}): the server's configuration, which "
                        "tells whether TRL can sync weights into it, is unreadable", restart,
                        rule="engine.server.weight_transfer")]
    if isinstance(config, dict) and config.get("weight_transfer_config") is None:
        return [Problem("engine.port", spec.port,
                        f"the vLLM server at {spec.url} has no weight-transfer engine: the trainer's weights could "
                        "not reach it, it would keep generating with the initial weights",
                        f"""start it with --weight-transfer-config '{{"backend": "nccl"}}'; {restart}""",
                        rule="engine.server.weight_transfer")]
    return []


def check_weight_transfer(spec: ServerSpec) -> None:
    if spec.weight_transfer:
        problems = weight_transfer_problems(spec)
        if problems:
            raise ConfigError(problems)


def stop_process_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to the server's process group (vLLM starts workers), SIGKILL to what is left after grace_s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # also workers that outlived their parent
    process.wait()
    deadline = time.monotonic() + grace_s
    while _live_members(process.pid) and time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        time.sleep(0.05)


def _live_members(pgid: int) -> list[int]:
    """Processes of the group that have not exited yet (Linux /proc; elsewhere nothing to wait for)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


class Terminated(KeyboardInterrupt):
    """SIGTERM while a launched server runs: unwinds like Ctrl-C so that the server is stopped."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """While the block runs, SIGTERM raises Terminated, unless someone else already handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
            signal.SIG_DFL, None):
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def running_server(spec: ServerSpec, log_path: Path, log=print):
    """A healthy server for the duration of the block: attached, or launched and always stopped afterwards."""
    if not spec.command:
        log(f"vllm_server: waiting for {spec.url} (up to {spec.timeout_s:g} s)")
        wait_until_healthy(spec)
        check_weight_transfer(spec)
        yield spec
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out, _sigterm_unwinds():
        log(f"vllm_server: starting on GPUs [{spec.env.get('CUDA_VISIBLE_DEVICES', '')}], log {log_path}")
        log(f"vllm_server: {shown_command(spec.command, spec.env)}")
        process = subprocess.Popen(spec.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **spec.env}, start_new_session=True)
        spec.pid = process.pid
        try:
            wait_until_healthy(spec, process, log_path)
            log(f"vllm_server: {spec.url} is healthy (pid {process.pid})")
            check_weight_transfer(spec)
            yield spec
        finally:
            stop_process_group(process)
            log(f"vllm_server: stopped (pid {process.pid})")


def _tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if path is None or not Path(path).exists():
        return "  (no log)"
    text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("  | " + line for line in text)
