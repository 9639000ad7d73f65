"""Training with several processes: r1exp relaunches itself under `accelerate launch`.

`python -m r1exp distributed=ddp distributed.num_processes=2 ...` is composed and checked as any run; Hydra creates
the run folder; then `r1exp.run.run` hands the job to `launch()`, which writes the accelerate config (the
`accelerate` block of conf/distributed/<strategy>.yaml plus the process counts) to <run folder>/accelerate_config.yaml
and runs `accelerate launch --config_file <it> -m r1exp <the job's overrides> hydra.run.dir=<run folder>`. Every rank
runs the same job in the same folder:
- rank 0 writes run.json (with the world size), metrics.jsonl, the reward curve and the W&B run, and prints to the
  console; the other ranks write nothing but their output, to rank<N>.log in the run folder;
- the launching process waits, forwards SIGTERM and SIGINT to accelerate, and returns rank 0's exit status. When the
  ranks end without rank 0 saying how (another rank crashed), it marks run.json failed, naming the rank logs.

`planned_world_size(cfg)` is the number of training processes the config asks for; validation rows that depend on
it (batch arithmetic, tensor parallel, GPUs) read it rather than the environment, so that the launching process
checks what the ranks will run. `RULES` are this module's validation rows. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from r1exp.config.rule import Rule
from r1exp.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, Problem
from r1exp.machine.processes import (DISTRIBUTED_TYPES, HYDRA_JOB_ENV, RUN_DIR_ENV, env_int, get, is_int, is_launched,
                                     is_main_process, machine_count, planned_world_size, processes_per_machine,
                                     rank, strategy)

ACCELERATE_FILE = "accelerate_config.yaml"
NEEDS_PACKAGE = {"deepspeed_zero2": "deepspeed", "deepspeed_zero3": "deepspeed"}
FSDP2_ACCELERATE = "1.7.0"           # fsdp_version: 2 needs accelerate >= 1.7 (TRL's accelerate_configs/fsdp2.yaml)
# Hydra settings of the ranks: the launching job already wrote .hydra/ and the run folder's log
RANK_HYDRA_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=stdout")


# --- what the config asks for ----------------------------------------------------------------------------------









def server_gpus(engine) -> list[int]:
    """GPUs the engine takes for itself (a launched vLLM server's): not for training."""
    return list(engine.own_gpus()) if engine is not None else []


def training_gpus(cfg, env, engine) -> list[int]:
    """The GPU indices of this machine the training processes use (all planned GPUs but a launched server's)."""
    from r1exp.machine.facts import planned_gpus

    server = set(server_gpus(engine))
    return [g for g in range(planned_gpus(cfg, env)) if g not in server]


def accelerate_config(cfg, env, engine) -> dict:
    """The accelerate config file's content: the strategy's `accelerate` block, the process counts and, when a
    vLLM server takes GPUs, the training GPUs (gpu_ids)."""
    from omegaconf import OmegaConf

    d = cfg.distributed
    out = dict(OmegaConf.to_container(d.accelerate, resolve=True))
    out.update(num_processes=int(d.num_processes), num_machines=int(d.num_machines),
               machine_rank=int(d.get("machine_rank") or 0), main_process_port=int(d.get("main_process_port") or 0))
    if d.get("main_process_ip"):
        out["main_process_ip"] = str(d.main_process_ip)
    if server_gpus(engine) and out.get("gpu_ids", "all") == "all":
        out["gpu_ids"] = ",".join(str(g) for g in training_gpus(cfg, env, engine))
    return out


def backend(cfg, env) -> str:
    from r1exp.machine.facts import planned_gpus

    return "gloo" if planned_gpus(cfg, env) == 0 else "nccl"


# --- the ranks -----------------------------------------------------------------------------------------------------







def needs_launch(cfg) -> bool:
    return strategy(cfg) != "none" and not is_launched()


def rank_exit_status(code: int) -> int:
    """A rank launched by r1exp that stopped on a usage error, or on a signal after saving a checkpoint, exits 0:
    rank 0 printed why and wrote it to run.json, whose status the launching process returns; a non-zero exit would
    only add torchrun's traceback (ChildFailedError) under the message. A runtime failure keeps its status: torchrun
    then stops the other ranks and reports it."""
    recorded = code == EXIT_USAGE or code > 128
    return EXIT_OK if recorded and RUN_DIR_ENV in os.environ else code


def before_training() -> None:
    """What several CPU processes need before training: checkpoints saved on the device "cpu:<rank>" load again
    (r1exp.patches.cpu_rank_location)."""
    if env_int("WORLD_SIZE", 1) < 2:
        return
    from r1exp.patches import cpu_rank_location

    cpu_rank_location.install()


def rank_log(run_dir: Path, n: int) -> Path:
    return Path(run_dir) / f"rank{n}.log"


def route_rank_output() -> None:
    """In a rank other than 0 of a launched run: stdout and stderr go to <run folder>/rank<N>.log (first thing in
    `python -m r1exp`, so that the ranks' checks and start-up do not repeat on the console)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir or is_main_process():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(rank_log(Path(run_dir), rank()), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    print(f"r1exp rank {rank()} of {env_int('WORLD_SIZE', 1)}: this rank's output (rank 0 prints to the console "
          "and writes run.json, metrics.jsonl and W&B)", flush=True)




def facts(cfg) -> dict:
    """run.json's `distributed`: the strategy and the world size this run trained with."""
    from r1exp.machine.facts import detect

    out = {"strategy": strategy(cfg), "world_size": env_int("WORLD_SIZE", 1)}
    run_dir = os.environ.get(RUN_DIR_ENV)
    if out["strategy"] != "none" or out["world_size"] > 1:
        out.update(num_machines=machine_count(cfg), backend=backend(cfg, detect()))
    if run_dir:
        out.update(accelerate_config=ACCELERATE_FILE,
                   rank_logs=[rank_log(Path("."), n).name for n in range(1, out["world_size"])])
    return out


# --- the launching process -----------------------------------------------------------------------------------------

@dataclass
class Job:
    """What the ranks need to compose the same job: Hydra's config flags, the job's overrides, its Hydra facts."""
    overrides: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    hydra: dict = field(default_factory=dict)


def current_job() -> Job:
    """The running Hydra job (a single run, or one job of a sweep, local or on SLURM)."""
    from hydra.core.hydra_config import HydraConfig

    from r1exp.config.compose import CONF_DIR
    from r1exp.records.manifest import hydra_job

    hc = HydraConfig.get()
    flags = [] if hc.job.config_name == "config" else ["--config-name", str(hc.job.config_name)]
    for source in hc.runtime.config_sources:
        path = str(source.path).removeprefix("file://")
        if source.provider == "command-line" and source.schema == "file":
            flags += ["--config-dir", path]
        elif source.provider == "main" and source.schema == "file" and Path(path).resolve() != CONF_DIR.resolve():
            flags += ["--config-path", path]
    return Job(overrides=[str(o) for o in hc.overrides.task], flags=flags, hydra=hydra_job())


def launch_command(job: Job, run_dir: Path) -> list[str]:
    run_dir = Path(run_dir).resolve()
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(run_dir / ACCELERATE_FILE),
            "-m", "r1exp", *job.flags, *job.overrides, f"hydra.run.dir={_hydra_quote(str(run_dir))}",
            *RANK_HYDRA_OVERRIDES]


def write_accelerate_config(cfg, env, run_dir: Path, engine) -> Path:
    import yaml

    path = Path(run_dir) / ACCELERATE_FILE
    path.write_text("# written by r1exp for `accelerate launch --config_file` (conf/distributed/"
                    f"{strategy(cfg)}.yaml)\n" + yaml.safe_dump(accelerate_config(cfg, env, engine), sort_keys=False))
    return path


def launch(cfg, run_dir: Path, engine) -> int:
    """Run this job's ranks under `accelerate launch` and wait; the exit status is rank 0's. `engine`: the run's
    (a launched vLLM server keeps its GPUs out of the ranks')."""
    from r1exp.machine.facts import detect

    run_dir = Path(run_dir).resolve()
    job = current_job()
    write_accelerate_config(cfg, detect(), run_dir, engine)
    cmd = launch_command(job, run_dir)
    env = {**os.environ, RUN_DIR_ENV: str(run_dir), HYDRA_JOB_ENV: json.dumps(job.hydra, default=str),
           "PYTHONPATH": os.pathsep.join(p for p in (_source_root(), os.environ.get("PYTHONPATH")) if p)}
    for key in ("MASTER_PORT", "MASTER_ADDR", "WORLD_SIZE", "RANK", "LOCAL_RANK"):  # the launcher sets its own
        env.pop(key, None)
    n = planned_world_size(cfg)
    print(f"r1exp: {strategy(cfg)}: {n} processes under accelerate launch ({run_dir / ACCELERATE_FILE}); "
          f"rank 0 prints here, ranks 1..{n - 1} write rank<N>.log in the run folder", flush=True)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # signals reach it through us, once
    code = _wait_forwarding_signals(proc)
    return settle(cfg, run_dir, code)


def settle(cfg, run_dir: Path, code: int) -> int:
    """The run's exit status from rank 0's run.json; a run.json that does not say how the run ended (ranks killed,
    accelerate failing to start) is marked failed here, never left looking like a running or finished run."""
    from omegaconf import OmegaConf

    from r1exp.records.manifest import MANIFEST_FILE, Manifest, now, read_manifest, update_manifest

    logs = ", ".join(p.name for p in sorted(Path(run_dir).glob("rank*.log"))) or "the output above"
    if (Path(run_dir) / MANIFEST_FILE).exists():
        m = read_manifest(run_dir)
        status, exit_code = m.get("status"), m.get("exit_code")
        if status in ("failed", "interrupted") and exit_code is not None:
            return int(exit_code)
        if status == "ok" and code == 0:
            return 0
        why = (f"rank 0 finished, but accelerate launch exited with status {code}: another rank failed"
               if status == "ok" else f"the ranks ended (accelerate launch exit status {code}) before rank 0 finished")
        update_manifest(run_dir, status="failed", exit_code=EXIT_RUNTIME, end=now(), error=f"{why}; see {logs}")
        return EXIT_RUNTIME
    resolved = OmegaConf.to_container(cfg, resolve=True)
    manifest = Manifest(run_dir, resolved, seed=int(cfg.seed), device="(not started)")
    manifest.finish("failed", error=f"accelerate launch exited with status {code} before rank 0 started; see {logs}",
                    exit_code=EXIT_RUNTIME, distributed={"strategy": strategy(cfg), "world_size": 0})
    return EXIT_RUNTIME


def _wait_forwarding_signals(proc: subprocess.Popen) -> int:
    """Wait for accelerate. SIGTERM / SIGINT to this process go to the ranks (accelerate's children), which save a
    checkpoint at the end of the step and stop (r1exp.records.resume), as a single-process run does; the second goes to
    them again (stop at once); a third to accelerate itself, which ends the ranks."""
    if threading.current_thread() is not threading.main_thread():
        return proc.wait()
    received = []

    def forward(signum, frame):
        received.append(signum)
        targets = _children(proc.pid) if len(received) < 3 else []
        for pid in targets or [proc.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    saved = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


# --- the dry run's plan --------------------------------------------------------------------------------------------

def describe(cfg, env, engine) -> str:
    """What a launch will do: processes, machines, GPUs, the accelerate command and config (for the dry run)."""
    import yaml

    if strategy(cfg) == "none":
        return ""
    n, machines = planned_world_size(cfg), machine_count(cfg)
    gpus = training_gpus(cfg, env, engine)
    where = (f"GPUs {','.join(map(str, gpus))} of each machine train, one process each (nccl)" if gpus
             else "CPU processes (gloo)")
    server = server_gpus(engine)
    if server:
        where += f"; the vLLM server has GPU(s) {','.join(map(str, server))}"
    lines = [f"distributed: {strategy(cfg)}, world size {n} ({processes_per_machine(cfg)} process(es) on each of "
             f"{machines} machine(s)); {where}",
             f"launch: accelerate launch --config_file <run folder>/{ACCELERATE_FILE} -m r1exp <overrides> "
             "hydra.run.dir=<run folder>",
             f"<run folder>/{ACCELERATE_FILE}:"]
    text = yaml.safe_dump(accelerate_config(cfg, env, engine), sort_keys=False)
    return "\n".join(lines + ["  " + line for line in text.splitlines()])


# --- validation rows -----------------------------------------------------------------------------------------------

def _numbers(ctx):
    cfg = ctx.cfg
    if get(cfg, "distributed") is None:
        return
    name = strategy(cfg)
    if name not in ("none", *DISTRIBUTED_TYPES):
        yield Problem("distributed.name", name, f"not a strategy r1exp knows ({', '.join(('none', *DISTRIBUTED_TYPES))})",
                      "pick one with distributed=ddp|fsdp|deepspeed_zero2|deepspeed_zero3, or distributed=none")
        return
    procs, machines = get(cfg, "distributed.num_processes"), get(cfg, "distributed.num_machines")
    for key, value in (("num_processes", procs), ("num_machines", machines)):
        if not (is_int(value) and value >= 1):
            yield Problem(f"distributed.{key}", value, "the number of training processes / machines is a whole "
                          "number >= 1", f"set distributed.{key}=1 or more")
            return
    if name == "none":
        if procs > 1 or machines > 1:
            yield Problem("distributed.num_processes" if procs > 1 else "distributed.num_machines",
                          procs if procs > 1 else machines, "distributed=none runs one process on one machine",
                          f"choose a strategy: distributed=ddp distributed.num_processes={procs} (or fsdp, "
                          "deepspeed_zero2, deepspeed_zero3)")
        return
    if procs % machines:
        yield Problem("distributed.num_processes", procs,
                      f"num_processes counts the processes of all machines (accelerate's count): {procs} do not "
                      f"split evenly over {machines} machines",
                      f"use a multiple of {machines}, e.g. distributed.num_processes={machines * max(1, procs // machines)}")
    mrank = get(cfg, "distributed.machine_rank", 0)
    if not (is_int(mrank) and 0 <= mrank < machines):
        yield Problem("distributed.machine_rank", mrank, f"machine ranks go from 0 to {machines - 1}",
                      f"set distributed.machine_rank to this machine's rank, 0..{machines - 1}")


def _several_machines(ctx):
    cfg = ctx.cfg
    machines = get(cfg, "distributed.num_machines", 1)
    if strategy(cfg) == "none" or not (is_int(machines) and machines > 1):
        return
    if not get(cfg, "distributed.main_process_ip"):
        yield Problem("distributed.main_process_ip", None,
                      f"{machines} machines meet at machine 0's address, and none is given",
                      "set distributed.main_process_ip=<address of machine 0> (the same on every machine)")
    port = get(cfg, "distributed.main_process_port")
    if not (is_int(port) and 1 <= port <= 65535):
        yield Problem("distributed.main_process_port", port,
                      "several machines need one fixed port on machine 0 (0 = any free port works on one machine only)",
                      "set distributed.main_process_port=29500 (or another port open between the machines)")


def _accelerate_block(ctx):
    cfg = ctx.cfg
    name = strategy(cfg)
    if name not in DISTRIBUTED_TYPES:
        return
    kind = get(cfg, "distributed.accelerate.distributed_type")
    if kind != DISTRIBUTED_TYPES[name]:
        fix = {v: k for k, v in DISTRIBUTED_TYPES.items()}.get(str(kind))
        yield Problem("distributed.accelerate.distributed_type", kind,
                      f"distributed={name} runs under accelerate's {DISTRIBUTED_TYPES[name]} "
                      "(MULTI_CPU would start a single process without mpirun)",
                      f"use distributed={fix}" if fix else "drop the distributed.accelerate.distributed_type override")


def _gpus(ctx):
    from r1exp.machine.facts import planned_gpus

    cfg = ctx.cfg
    if strategy(cfg) not in DISTRIBUTED_TYPES:
        return
    per_machine = processes_per_machine(cfg)
    gpus = planned_gpus(cfg, ctx.env, ctx.loader)
    if gpus == 0:
        if per_machine > ctx.env.cpu_count:
            yield Problem("distributed.num_processes", planned_world_size(cfg),
                          f"{per_machine} CPU processes on {ctx.env.cpu_count} cores: each waits for the others",
                          f"use distributed.num_processes<={ctx.env.cpu_count} on this machine", severity="warning")
        return
    training, server = training_gpus(cfg, ctx.env, ctx.engine), server_gpus(ctx.engine)
    besides = f" ({len(server)} of the {gpus} GPUs serve vLLM: engine.gpus={server})" if server else ""
    if per_machine > len(training):
        yield Problem("distributed.num_processes", planned_world_size(cfg),
                      f"one training process per GPU: {per_machine} process(es) per machine, {len(training)} "
                      f"training GPU(s){besides}",
                      f"set distributed.num_processes={len(training) * machine_count(cfg)}"
                      + (" or give the server fewer GPUs" if server else "")
                      + " (hardware.num_gpus says how many GPUs the plan assumes)")
    elif per_machine < len(training):
        yield Problem("distributed.num_processes", planned_world_size(cfg),
                      f"{len(training) - per_machine} of the {len(training)} training GPUs stay idle{besides}",
                      f"set distributed.num_processes={len(training) * machine_count(cfg)} to use them all",
                      severity="warning")


def _installed(ctx):
    from packaging.version import Version

    cfg, name = ctx.cfg, strategy(ctx.cfg)
    if name not in DISTRIBUTED_TYPES:
        return
    accelerate = _version("accelerate")
    if accelerate is None:
        yield Problem("distributed.name", name, "several processes are launched with accelerate, which is not installed",
                      'pip install "accelerate>=1.10" (or the whole stack: bash scripts/install_cpu.sh / install_gpu.sh)')
    elif name == "fsdp" and get(cfg, "distributed.accelerate.fsdp_config.fsdp_version") == 2 \
            and Version(accelerate) < Version(FSDP2_ACCELERATE):
        yield Problem("distributed.name", name, f"FSDP2 needs accelerate >= {FSDP2_ACCELERATE} (installed: {accelerate})",
                      f'pip install "accelerate>={FSDP2_ACCELERATE}"')
    package = NEEDS_PACKAGE.get(name)
    if package and _version(package) is None:
        yield Problem("distributed.name", name, f"distributed={name} needs {package}, which is not installed here",
                      f"pip install {package} (on a CUDA machine), or use distributed=ddp / distributed=fsdp")


def _cpu(ctx):
    from r1exp.machine.facts import planned_gpus

    cfg, name = ctx.cfg, strategy(ctx.cfg)
    if name not in DISTRIBUTED_TYPES or planned_gpus(cfg, ctx.env, ctx.loader) != 0:
        return
    if name.startswith("deepspeed"):
        yield Problem("distributed.name", name, "DeepSpeed trains on CUDA GPUs; this run has none (a CPU run)",
                      "on CPU use distributed=ddp (gloo); DeepSpeed needs a GPU machine (hardware.num_gpus to plan one)")
    elif name == "fsdp":
        yield Problem("distributed.name", name, "FSDP shards over CUDA GPUs; on CPU accelerate silently trains "
                      "plain DDP instead (measured: the same losses as distributed=ddp), so the run would not be "
                      "what it says",
                      "on CPU use distributed=ddp (gloo); FSDP needs a GPU machine (hardware.num_gpus to plan one)")
    ddp_backend = get(cfg, "trainer.ddp_backend")
    if ddp_backend not in (None, "gloo"):
        yield Problem("trainer.ddp_backend", ddp_backend, f"{ddp_backend} needs {'CUDA GPUs' if ddp_backend == 'nccl' else 'a backend this CPU build lacks'};"
                      " CPU processes talk over gloo", "drop trainer.ddp_backend (gloo on CPU, nccl on GPUs)")


RULES: list[Rule] = [
    Rule("distributed.processes", ("distributed.name", "distributed.num_processes", "distributed.num_machines",
                                   "distributed.machine_rank"), _numbers,
         doc="a known strategy; whole numbers of processes and machines; processes split evenly over machines"),
    Rule("distributed.machines", ("distributed.num_machines", "distributed.main_process_ip",
                                  "distributed.main_process_port"), _several_machines,
         doc="several machines need machine 0's address and a fixed port"),
    Rule("distributed.accelerate", ("distributed.accelerate.distributed_type",), _accelerate_block,
         doc="the accelerate block launches the strategy it is named after"),
    Rule("distributed.gpus", ("distributed.num_processes", "hardware.num_gpus", "engine.gpus"), _gpus,
         doc="one training process per GPU, the GPUs of a launched vLLM server left out"),
    Rule("distributed.installed", ("distributed.name",), _installed, scope="machine",
         doc="accelerate (FSDP2: >= 1.7) and, for DeepSpeed, deepspeed are installed"),
    Rule("distributed.cpu", ("distributed.name", "trainer.ddp_backend", "hardware.device"), _cpu, scope="machine",
         doc="on CPU: ddp over gloo (FSDP and DeepSpeed need CUDA GPUs)"),
]


# --- helpers -------------------------------------------------------------------------------------------------------







def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _source_root() -> str:
    """The folder holding the r1exp package, so that the ranks import this same r1exp (an uninstalled checkout)."""
    return str(Path(__file__).resolve().parents[2])


def _hydra_quote(value: str) -> str:
    """A value for a Hydra override: quoted when it holds characters Hydra's grammar would read."""
    if all(c.isalnum() or c in "/._-:+@%" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
