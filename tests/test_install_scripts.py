"""The GPU install scripts, as far as a CPU machine without network can check them: the bundle is resolved for the
GPU target from pyproject's own pins (never torch), and the installer refuses, with exit 2 and the reason, to
replace the machine's torch or to install from something that is not a bundle. (Downloading the bundle needs
network; installing it needs the CUDA machine: see README, GPU install.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH = __import__("importlib.metadata").metadata.version("torch")   # torch.__version__, without importing torch
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def script(name: str, *args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PATH": path, **(env or {})}, timeout=timeout)


def test_the_bundle_is_resolved_for_the_gpu_target_from_pyprojects_pins(tmp_path):
    result = script("bundle_gpu.sh", str(tmp_path / "bundle"), "--print")
    assert result.returncode == 0, result.stderr
    wanted = (tmp_path / "bundle" / "requirements.txt").read_text().split()
    # the machine keeps its torch: it is not asked for; a stand-in torch wheel answers for it while pip resolves
    gpu = [r for r in PROJECT["optional-dependencies"]["gpu"] if not r.startswith(("r1exp[", "torch=="))]
    train = PROJECT["optional-dependencies"]["train"]
    assert set(PROJECT["dependencies"] + gpu + train) <= set(wanted)
    assert "vllm==0.26.0" in wanted and not any(r.startswith(("r1exp", "torch")) for r in wanted)
    commands = result.stdout
    for part in ("pip install -q --dry-run --ignore-installed --target", "--only-binary=:all:", "--python-version 3.12",
                 "--abi cp312", "--platform manylinux_2_28_x86_64", "--report", "torch-2.11.0+machine-py3-none-any.whl",
                 "-c " + str(tmp_path / "bundle" / ".resolve" / "constraints.txt"), "--no-deps --ignore-installed",
                 "but torch, what torch requires on Linux, and xformers", "pip download -q --no-deps",
                 "pip wheel -q --no-deps"):
        assert part in commands, part


def test_the_bundle_script_rejects_a_bad_target():
    result = script("bundle_gpu.sh", "--python", "2.7", "--print")
    assert result.returncode == 2 and "CPython version like 3.12" in result.stderr


def test_the_installer_never_replaces_the_machines_torch():
    result = script("install_gpu.sh")
    if TORCH.split("+")[0] != "2.11.0":
        assert result.returncode == 2
        assert f"torch {TORCH}" in result.stderr and "never replaces" in result.stderr
        assert "install_cpu.sh" in result.stderr


def test_the_installer_needs_a_bundle_of_wheels(tmp_path):
    same_torch = {"R1EXP_GPU_TORCH": TORCH.split("+")[0]}   # get past the torch check here
    for args, says in ((["--from"], "--from needs a folder"),
                       (["--from", str(tmp_path / "nowhere")], "is not a bundle of wheels"),
                       (["--from", str(tmp_path)], "is not a bundle of wheels"),
                       (["--frm", "x"], "unknown argument")):
        result = script("install_gpu.sh", *args, env=same_torch)
        assert result.returncode == 2 and says in result.stderr, (args, result.stderr)


@pytest.mark.slow
def test_the_bundle_resolves_on_the_index_without_torchs_own_requirements(tmp_path):
    """The resolution step for real (about a minute; the package index is needed, nothing is downloaded): torch's CUDA
    requirements (nvidia-nccl-cu13==2.28.9 is not on every index) are never resolved, and what the bundle leaves to
    the GPU machine is said."""
    bundle = tmp_path / "bundle"
    result = script("bundle_gpu.sh", str(bundle), "--resolve-only", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    wheels = dict(line.split("==") for line in (bundle / "wheels.txt").read_text().split())
    assert (wheels["vllm"], wheels["trl"], wheels["peft"], wheels["unsloth"]) == ("0.26.0", "1.15.0", "0.21.0",
                                                                                  "2026.10.5")
    left = (bundle / "left-to-machine.txt").read_text()
    assert left.startswith("torch 2.11.0") and "nvidia-nccl-cu13" in left and "xformers" in left
    assert not {"torch", "xformers", "triton", "nvidia-nccl-cu13"} & set(wheels)
    assert "left to the GPU machine:" in result.stdout and "nothing downloaded" in result.stdout
    assert not list(bundle.glob("*.whl"))[1:]   # only the antlr4 wheel built here
