"""What a machine's first run compiles and keeps on disk (hardware.kernel_cache), and how many kernels a run compiled.

A machine's first run fills caches under the home folder: Triton's compiled kernels (vLLM's sampler and LoRA kernels,
Unsloth's; 54 for a 0.5B Unsloth run, 27 with loader=peft), vLLM's inspection of the model's class (which vLLM
otherwise runs in a fresh Python process: engine start 13.5 s instead of 3.5-5.5 s), and those Inductor, FlashInfer and
the CUDA driver keep. On the H200 (docs/benchmarks.md), 0.5B Unsloth: 83.7 s to the first
step with every cache empty, 35.9-51.5 s with them filled. A machine that starts empty (a container, a cloud pod, a new
cluster node) pays that on its first run every time. `hardware.kernel_cache=FOLDER` keeps every one of those caches
in FOLDER instead: on persistent or shared storage, any machine of the same kind (GPU, driver, packages: the caches
key their entries by them) finds them. A fresh H200 given a folder another H200 filled took 52.1 s to the first step
in its first run (vLLM's warm-up 0.7 s and graph capture 2.5 s, as on a machine that has run before), where its
first run with the caches empty had taken 83.7 s on the other machine. A cold page cache costs under a second (with
the libraries evicted the start took 38.7 s against 38.1 s).

run.json `startup.kernels_compiled` counts the Triton kernels a run compiled before its first step ended: 0 where
the cache held them all.
"""

from __future__ import annotations

import os
from pathlib import Path

from r1exp.errors import Problem
from r1exp.machine.facts import why_not_creatable

# cache: the environment variable that moves it (read when the library first needs the cache, so it is set before
# the heavy imports; FlashInfer's names the folder that holds .cache/flashinfer)
CACHE_ENV = {
    "triton": "TRITON_CACHE_DIR",
    "inductor": "TORCHINDUCTOR_CACHE_DIR",
    "vllm": "VLLM_CACHE_ROOT",
    "flashinfer": "FLASHINFER_WORKSPACE_BASE",
    "cuda": "CUDA_CACHE_PATH",
}


def environment(folder: str | os.PathLike) -> dict[str, str]:
    """The environment that puts every kernel cache in its own subfolder of `folder`."""
    root = Path(folder).expanduser().absolute()
    return {variable: str(root / name) for name, variable in CACHE_ENV.items()}


def use(folder: str | os.PathLike | None) -> dict[str, str]:
    """hardware.kernel_cache: point every kernel cache into `folder` (before torch, Triton, vLLM are imported; the
    CUDA driver reads its variable when it starts). None leaves the libraries' own places. Returns what was set."""
    if not folder:
        return {}
    env = environment(folder)
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    return env


def triton_dir() -> Path:
    """Where Triton keeps its compiled kernels (its default, or TRITON_CACHE_DIR)."""
    return Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")


def triton_kernels(folder: Path | None = None) -> set[str]:
    """The compiled kernels in Triton's cache: one metadata file per kernel variant (its group files left out)."""
    folder = folder or triton_dir()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return set()
    found = set()
    for entry in entries:
        if entry.is_dir():
            with os.scandir(entry.path) as files:
                found.update(f"{entry.name}/{f.name}" for f in files
                             if f.name.endswith(".json") and not f.name.startswith("__grp__"))
    return found


def check(ctx):
    """Rule hardware.kernel_cache: the folder can be created and written (else the first kernel compile fails deep
    inside Triton, minutes in)."""
    from r1exp.config.rule import get

    folder = get(ctx.cfg, "hardware.kernel_cache")
    why = why_not_creatable(Path(str(folder)).expanduser()) if folder else None
    if why is not None:
        yield Problem("hardware.kernel_cache", str(folder), f"the kernel caches cannot go there: {why}",
                      "choose a writable folder, or hardware.kernel_cache=null (each library's own cache)")
