"""Whether Python can reuse compiled bytecode for the packages a run imports, or compiles them from source at every
start. Packages installed without bytecode (`pip install --no-compile`, some images) and a Python that may not write
it (PYTHONDONTWRITEBYTECODE=1, or read-only package folders) make every run compile torch, transformers, vLLM and
the rest again: 17 s of a 0.5B Unsloth run's start on the H200 (docs/benchmarks.md), +5.9 s
(2.4x the imports) on a 2-core CPU (docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import os
import sys

from r1exp.errors import Problem
from r1exp.machine.facts import why_not_creatable

# The packages whose imports dominate a run's start: the ones run.json's startup times as `imports`

HEAVY_PACKAGES = frozenset({"torch", "transformers", "trl", "peft", "vllm", "unsloth", "unsloth_zoo", "datasets",
                            "accelerate", "deepspeed", "bitsandbytes", "triton", "xformers", "flash_attn",
                            "tokenizers", "safetensors"})
HEAVY = tuple(sorted(HEAVY_PACKAGES))


def _writable(folder: str) -> bool:
    """Whether a file can be created in `folder` or, if it does not exist yet, its nearest existing ancestor."""
    return why_not_creatable(folder) is None


def source_of(name: str) -> str | None:
    """The __init__.py of an installed top-level package (found, not imported), else None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    return origin if origin and origin.endswith(".py") else None


def compiled_every_run(name: str) -> bool:
    """True when `name` is installed, has no bytecode for its __init__ where Python looks for it (next to it, or
    under sys.pycache_prefix), and Python cannot write it there: every process compiles the package from source."""
    origin = source_of(name)
    if origin is None:
        return False
    cached = importlib.util.cache_from_source(origin)
    if os.path.exists(cached):
        return False
    return sys.dont_write_bytecode or not _writable(os.path.dirname(cached))


def check(ctx):
    """Rule machine.bytecode: a warning naming the packages, why, and the fix."""
    names = [n for n in HEAVY if compiled_every_run(n)]
    if not names:
        return
    folders = " ".join(sorted({os.path.dirname(os.path.dirname(source_of(n))) for n in names}))
    why = ("PYTHONDONTWRITEBYTECODE is set" if sys.dont_write_bytecode
           else "their folders are read-only for this user")
    yield Problem("machine.bytecode", ", ".join(names),
                  f"these packages have no compiled bytecode and {why}, so every run compiles them from source "
                  "before it starts (17 s of the start on an H200 host, 2.4x the imports on a CPU)",
                  f"compile them once: {sys.executable} -m compileall -q -j 0 {folders} (Python "
                  "reads bytecode even with PYTHONDONTWRITEBYTECODE), or point PYTHONPYCACHEPREFIX at a writable "
                  "folder and unset PYTHONDONTWRITEBYTECODE", severity="warning")
