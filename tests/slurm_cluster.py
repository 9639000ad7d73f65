"""A real single-node SLURM cluster on this machine, for tests: munged, slurmctld and slurmd of Debian's packages
(`slurmctld slurmd munge slurm-client`, installed by .ci/run), configured under a temporary folder.

Everything the cluster writes (state, spool, logs, pid files, munge's socket) lives in that folder, on free ports,
so it does not touch a system SLURM or munge, and two test sessions on one machine do not meet. The daemons run as
root (SlurmUser=root), with the settings that work without systemd or cgroups: proctrack/linuxproc, task/none,
select/cons_tres, no cgroup.conf. `start()` waits until the node is idle; `stop()` ends the daemons by their pid
files. Clients (sbatch, squeue, submitit) find the cluster through SLURM_CONF, which `env()` gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")
PACKAGES = "slurmctld slurmd munge slurm-client"
MUNGE_KEY = Path("/etc/munge/munge.key")

SLURM_CONF = """\
ClusterName=r1exptest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why a cluster cannot start here (None when it can)."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing): apt-get install {PACKAGES} (.ci/run does)"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root (SlurmUser=root); run the tests as root"
    if not MUNGE_KEY.exists():
        return f"munge has no key ({MUNGE_KEY}): reinstall munge, or create one with mungekey"
    return None


@dataclass
class Cluster:
    root: Path
    partition: str = "debug"
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60.0) -> "Cluster":
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        munge_socket = self.root / "munge" / "munge.socket"
        self.conf.write_text(SLURM_CONF.format(
            host=self.host, ctld_port=_free_port(), slurmd_port=_free_port(), munge_socket=munge_socket,
            root=self.root, cpus=self.cpus, memory_mb=_memory_mb(), partition=self.partition))
        self._run(["munged", "--force", f"--socket={munge_socket}", f"--pid-file={self.root}/munge/munged.pid",
                   f"--log-file={self.root}/munge/munged.log", f"--seed-file={self.root}/munge/munged.seed"])
        self._run(["slurmctld", "-f", str(self.conf)])
        self._run(["slurmd", "-f", str(self.conf)])
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sinfo()
            if state.startswith("idle") or state.startswith("mix"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the test SLURM cluster did not come up in {timeout:.0f} s (node state {state!r});\n"
                           + self.logs())

    def sinfo(self) -> str:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, **self.env()})
        return out.stdout.strip()

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def submissions(self) -> int:
        """Jobs submitted to this cluster so far (slurmctld logs each submission; sbatch --test-only is not one)."""
        log = self.root / "slurmctld.log"
        return log.read_text(errors="replace").count("_slurm_rpc_submit_batch_job") if log.exists() else 0

    def jobs(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, **self.env()})
        return out.stdout.split() if out.returncode == 0 else []

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the queue to empty (a job's step ends a moment after its process); cancel what is left."""
        for cancel in (False, True):
            if cancel and self.jobs():
                subprocess.run(["scancel", *self.jobs()], capture_output=True, timeout=30, env={**os.environ, **self.env()})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.jobs():
                    return
                time.sleep(0.5)

    def stop(self) -> None:
        """Let the jobs end, then SIGTERM to each daemon by its pid file and wait for it to go (SIGKILL after 15 s)."""
        self.drain()
        for name in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            path = self.root / name
            try:
                pid = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            _end(pid)

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **self.env()})
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n" + self.logs())


def _end(pid: int, grace: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024
