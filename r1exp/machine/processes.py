"""The processes of a run, read from the config and the environment: how many train, which one this is, and the
job (Hydra's, SLURM's) that started it. Nothing here imports torch but `any_rank`, inside it.

`planned_world_size(cfg)` is the number of training processes the config asks for; validation rows that depend on
it (batch arithmetic, tensor parallel, GPUs) read it rather than the environment, so that the launching process
checks what the ranks will run (r1exp/scale/distributed.py launches them).
"""

from __future__ import annotations

import json
import os


RUN_DIR_ENV = "R1EXP_RUN_DIR"        # set for the ranks: the run folder they share
HYDRA_JOB_ENV = "R1EXP_HYDRA_JOB"    # the launching job's Hydra facts (sweep folder, job number) for rank 0's run.json
# accelerate's distributed_type for each strategy (MULTI_GPU = torchrun; on CPU its ranks use gloo, MULTI_CPU)
DISTRIBUTED_TYPES = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}


def strategy(cfg) -> str:
    return str(get(cfg, "distributed.name", "none") or "none")


def planned_world_size(cfg) -> int:
    """Training processes of the run: distributed.num_processes (over all machines) under a strategy; with
    distributed=none, WORLD_SIZE when an outside launcher (torchrun, accelerate launch) started this process, else 1."""
    if strategy(cfg) == "none":
        return env_int("WORLD_SIZE", 1)
    n = get(cfg, "distributed.num_processes", 1)
    return n if is_int(n) and n >= 1 else 1


def machine_count(cfg) -> int:
    machines = get(cfg, "distributed.num_machines", 1)
    return machines if is_int(machines) and machines >= 1 else 1


def processes_per_machine(cfg) -> int:
    return max(1, planned_world_size(cfg) // machine_count(cfg))


def rank() -> int:
    return env_int("RANK", 0)


def is_main_process() -> bool:
    """Rank 0, or a single-process run: the process that writes run.json, metrics and W&B."""
    return rank() == 0


def is_launched() -> bool:
    """This process is a rank started by a launcher (ours, or accelerate/torchrun started by hand)."""
    return RUN_DIR_ENV in os.environ or "LOCAL_RANK" in os.environ


def any_rank(flag: bool, device=None) -> bool:
    """True on every rank when it is true on one (a collective: every rank calls it at the same point), e.g. a stop
    that one rank's signal asked for; the flag itself outside a multi-process run."""
    if env_int("WORLD_SIZE", 1) < 2:
        return flag
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=device or "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def launched_hydra_job() -> dict | None:
    """The Hydra facts of the job that launched this rank (its sweep folder and number), None outside a launch."""
    text = os.environ.get(HYDRA_JOB_ENV)
    return json.loads(text) if text and RUN_DIR_ENV in os.environ else None


def get(cfg, key, default=None):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def env_int(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        return default


def slurm_job() -> dict | None:
    """The SLURM job this process runs in (for run.json), None outside SLURM."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    keys = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
            "node": "SLURMD_NODENAME", "partition": "SLURM_JOB_PARTITION", "cluster": "SLURM_CLUSTER_NAME"}
    return {name: os.environ[var] for name, var in keys.items() if var in os.environ}
