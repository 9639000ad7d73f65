"""Sweeps on SLURM (`hydra/launcher=slurm`): what the cluster says of the jobs' resources, before any is submitted.

hydra-submitit-launcher submits the sweep as a job array with sbatch; a partition, GPU count, CPU count, memory or
time limit the cluster cannot give ends there in a traceback (submitit's FailedJobError), after the sweep folder
was made. `check(cl)` builds the very sbatch script submitit would submit (submitit's own executor, with the
launcher config's keys, as the launcher passes them) and asks `sbatch --test-only`, which checks it against the
cluster's partitions and nodes without queuing anything. A refusal is one readable block naming the
hydra.launcher key to change, and exit status 2. The run.json of a job that ran on SLURM records its job and node.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from r1exp.errors import Problem

SLURM_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SETTINGS = "conf/hydra/launcher/slurm.yaml"
# What sbatch says -> the launcher key behind it and the fix
REFUSALS = (
    ("configuration source", "hydra/launcher", "sbatch finds no SLURM cluster from this machine (no slurm.conf)",
     "run the sweep on the cluster's login node (or point SLURM_CONF at its slurm.conf); here use hydra/launcher=local"),
    ("configuration file", "hydra/launcher", "sbatch cannot read this machine's SLURM configuration (slurm.conf)",
     "run the sweep on the cluster's login node (or point SLURM_CONF at its slurm.conf); here use hydra/launcher=local"),
    ("unable to contact slurm controller", "hydra/launcher", "the cluster's controller (slurmctld) does not answer",
     "check the cluster (`sinfo`), then run the sweep again"),
    ("generic resource", "hydra.launcher.gpus_per_node",
     "the cluster has no GPUs of that kind (GRES gpu) in this partition",
     "on CPU nodes set hydra.launcher.gpus_per_node=null; for GPUs pick a GPU partition (hydra.launcher.partition=...)"),
    ("invalid partition", "hydra.launcher.partition", "the cluster has no such partition",
     "set hydra.launcher.partition to one `sinfo -s` lists (null = the cluster's default partition)"),
    ("node configuration is not available", "hydra.launcher",
     "no node of the partition has the CPUs, memory or GPUs one job asks for",
     "lower hydra.launcher.cpus_per_task / mem_gb / gpus_per_node to what `sinfo -N -l` shows for the partition"),
    ("feature specification", "hydra.launcher.constraint", "no node of the partition has that feature",
     "set hydra.launcher.constraint to a feature `sinfo -o '%N %f'` lists, or null"),
    ("time limit", "hydra.launcher.timeout_min", "the partition does not allow that wall-clock limit",
     "lower hydra.launcher.timeout_min to the partition's limit (`sinfo -o '%P %l'`)"),
    ("account", "hydra.launcher.account", "the cluster does not accept that account for you",
     "set hydra.launcher.account to one of yours (`sacctmgr show assoc user=$USER`)"),
    ("qos", "hydra.launcher.qos", "the cluster does not accept that QOS for you",
     "set hydra.launcher.qos to one of yours, or null"),
)


def launcher_config(cl):
    """The composed hydra.launcher of the command line, or None when the launcher is not SLURM's."""
    from r1exp.config.compose import compose, sweep_overrides

    folder = cl.config_dir or cl.config_path
    fixed = [o for o in sweep_overrides(cl.overrides, cl.multirun, cl.config_name, folder)
             if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    cfg = compose(fixed, cl.config_name, folder, return_hydra_config=True)
    launcher = cfg.hydra.get("launcher")
    return launcher if launcher is not None and launcher.get("_target_") == SLURM_TARGET else None


def sbatch_script(launcher, folder: Path) -> str:
    """The sbatch script submitit would write for one job of the sweep (the launcher's own parameter mapping)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    params = {}
    for key in launcher:
        if key in ("_target_", "submitit_folder", "name"):
            continue
        value = launcher[key]
        params[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    executor = submitit.AutoExecutor(cluster="slurm", folder=folder,
                                     slurm_max_num_timeout=params.pop("max_num_timeout", 0) or 0)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(name="r1exp", **{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    return executor._executor._make_submission_file_text("true", "r1exp-preflight")


def check(cl, dry_run: bool = False) -> list[Problem]:
    """hydra/launcher=slurm: sbatch is here and `sbatch --test-only` accepts one job of the sweep."""
    if not cl.multirun:
        return []
    launcher = launcher_config(cl)
    if launcher is None:
        return []
    severity = "warning" if dry_run else "error"  # a dry run may plan a cluster sweep elsewhere
    if shutil.which("sbatch") is None:
        return [Problem("hydra/launcher", "slurm", "SLURM's sbatch is not on this machine's PATH: a SLURM sweep is "
                        "submitted from a machine of the cluster (its login node)",
                        "run the command on the cluster's login node; on this machine use hydra/launcher=local or "
                        "the default launcher", rule="slurm.sbatch", severity=severity)]
    with tempfile.TemporaryDirectory(prefix="r1exp-sbatch-") as tmp:
        script = Path(tmp) / "job.sh"
        script.write_text(sbatch_script(launcher, Path(tmp)))
        try:
            proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return [Problem("hydra/launcher", "slurm", "sbatch --test-only did not answer in 60 s: slurmctld is "
                            "unreachable", "check the cluster (`sinfo`), then run the sweep again", rule="slurm.sbatch",
                            severity=severity)]
    if proc.returncode == 0:
        return []
    said = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
    for needle, key, why, fix in REFUSALS:
        if needle in said.lower():
            return [Problem(key, _value(launcher, key), f"sbatch refuses the sweep's jobs ({said}): {why}", fix,
                            rule="slurm.resources", severity=severity)]
    return [Problem("hydra.launcher", "(sbatch options)", f"sbatch refuses the sweep's jobs: {said}",
                    f"set the hydra.launcher.* keys ({SETTINGS}) to what this cluster accepts", rule="slurm.resources",
                    severity=severity)]


def refused(cl, dry_run: bool = False) -> bool:
    """Print what `check` found; True when the sweep must not start (exit 2)."""
    import sys

    from r1exp.errors import errors_of, render_problems

    problems = check(cl, dry_run=dry_run)
    if problems:
        print(render_problems(problems), file=sys.stderr)
    if errors_of(problems):
        print("\nthe SLURM cluster would not run these jobs; nothing was submitted.", file=sys.stderr)
        return True
    return False




def _value(launcher, key: str):
    if key.startswith("hydra.launcher."):
        return launcher.get(key.rpartition(".")[2])
    if key == "hydra/launcher":
        return "slurm"
    return ", ".join(f"{k}={launcher.get(k)}" for k in ("partition", "cpus_per_task", "mem_gb", "gpus_per_node"))
