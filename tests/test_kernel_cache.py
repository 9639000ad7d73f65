"""hardware.kernel_cache and the kernels a run compiled (r1exp/machine/kernel_cache.py).

A machine's first run compiles its GPU kernels (Triton's above all) into caches under the home folder; on the H200
that is most of the difference between a fresh machine's start and a later one. The folder setting moves every one
of those caches; run.json `startup.kernels_compiled` says how many kernels a start compiled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1exp.machine import kernel_cache
from r1exp.observe import summary
from r1exp.observe import timing


@pytest.fixture
def clean_cache_env(monkeypatch):
    """The cache variables as this test leaves them: restored (or removed) afterwards."""
    for variable in kernel_cache.CACHE_ENV.values():
        monkeypatch.setenv(variable, "unset-by-test")
        monkeypatch.delenv(variable)
    return monkeypatch


def test_a_folder_moves_every_cache_into_its_own_subfolder(clean_cache_env, tmp_path):
    env = kernel_cache.use(tmp_path / "kernels")
    assert set(env) == set(kernel_cache.CACHE_ENV.values())
    for name, variable in kernel_cache.CACHE_ENV.items():
        assert env[variable] == str(tmp_path / "kernels" / name)
        assert (tmp_path / "kernels" / name).is_dir()
    assert kernel_cache.triton_dir() == tmp_path / "kernels" / "triton"


def test_the_libraries_installed_here_read_the_folders_r1exp_sets(clean_cache_env, tmp_path):
    """vLLM and Inductor read their variable when they need the cache, so setting it before the build is enough
    (Triton, FlashInfer and the CUDA driver are on the GPU machine only: bench/results/gpu/startup)."""
    import vllm.envs
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    kernel_cache.use(tmp_path)
    assert vllm.envs.VLLM_CACHE_ROOT == str(tmp_path / "vllm")
    assert cache_dir() == str(tmp_path / "inductor")


def test_no_folder_leaves_each_librarys_own_place(clean_cache_env):
    assert kernel_cache.use(None) == {} and kernel_cache.use("") == {}
    assert str(kernel_cache.triton_dir()).endswith(".triton/cache")


def _compile(folder, name):
    """A kernel as Triton caches it: a folder per compiled variant with its metadata and the group file."""
    entry = folder / f"hash{len(list(folder.glob('*')))}"
    entry.mkdir(parents=True)
    (entry / f"{name}.json").write_text(json.dumps({"name": name}))
    (entry / f"__grp__{name}.json").write_text("{}")
    (entry / f"{name}.cubin").write_bytes(b"")


def test_startup_counts_the_kernels_compiled_from_the_build_to_the_first_step(clean_cache_env, tmp_path):
    cache = tmp_path / "triton"
    clean_cache_env.setenv("TRITON_CACHE_DIR", str(cache))
    clean_cache_env.setattr(timing.Startup, "current", None)
    _compile(cache, "_left_by_an_earlier_run")
    startup = timing.Startup()
    with startup.build():
        _compile(cache, "_lora_shrink_kernel")
        _compile(cache, "_lora_shrink_kernel")   # another specialization of the same kernel
    _compile(cache, "_rms_layernorm_backward")    # the first step compiles the training kernels
    startup.first_step(step_s=1.0, generation_s=0.5)
    assert startup.parts["kernels_compiled"] == 3
    assert startup.parts["kernel_cache_dir"] == str(cache)


@pytest.mark.parametrize("compiled, shown", [(54, True), (summary.KERNELS_WORTH_A_LINE, True), (2, False),
                                             (None, False)])
def test_the_closing_summary_names_a_cold_start(tmp_path, compiled, shown):
    startup = {} if compiled is None else {"kernels_compiled": compiled, "kernel_cache_dir": "/root/.triton/cache"}
    _, lines = summary.run_summary(tmp_path, {"status": "ok", "exit_code": 0, "startup": startup})
    kernels = dict(lines).get("GPU kernels")
    assert (kernels is not None) == shown
    if shown:
        assert kernels.startswith(f"{compiled} compiled into /root/.triton/cache") and "hardware.kernel_cache" in kernels


STARTUP = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu" / "startup"


def startup(call: str) -> dict:
    """Each run's run.json `startup` of one committed call (its variants.json)."""
    return {label: run["startup"] for label, run in
            json.loads((STARTUP / call / "variants.json").read_text())["runs"].items()}


def test_on_the_h200_a_folder_another_machine_filled_held_every_kernel():
    """A fresh H200's first runs with every kernel cache empty (fresh_machine_cold: 0.5B Unsloth, then PEFT) compiled
    54 and 27 Triton kernels, and the engine start waited on vLLM's inspection of the model class in a fresh Python
    process (its stacks); a second fresh H200 given the folder the first one filled (fresh_machine_carried_cache, in
    hardware.kernel_cache) compiled none in any of its runs, Unsloth's or PEFT's, and its engine started in under half
    the time."""
    cold, carried = startup("fresh_machine_cold"), startup("fresh_machine_carried_cache")
    assert cold["q05_unsloth_first"]["kernels_compiled"] == 54 and cold["q05_peft_first"]["kernels_compiled"] == 27
    assert {label: s["kernels_compiled"] for label, s in carried.items()} == dict.fromkeys(carried, 0)
    assert carried["q05_unsloth_carried"]["engine_start_s"] < cold["q05_unsloth_first"]["engine_start_s"] / 2
    stacks = {call: (STARTUP / call / "runs" / label / "stacks.txt").read_text() for call, label in
              (("fresh_machine_cold", "q05_unsloth_first"), ("fresh_machine_carried_cache", "q05_unsloth_carried"))}
    assert "_run_in_subprocess" in stacks["fresh_machine_cold"] and "make_cubin" in stacks["fresh_machine_cold"]
    assert "_run_in_subprocess" not in stacks["fresh_machine_carried_cache"]
    assert "make_cubin" not in stacks["fresh_machine_carried_cache"]
    run = json.loads((STARTUP / "fresh_machine_carried_cache/runs/q05_unsloth_carried/run.json").read_text())
    assert run["startup"]["kernel_cache_dir"] == f"{run['config']['hardware']['kernel_cache']}/triton"


def test_on_a_fresh_h200_the_carried_folder_left_its_first_run_nothing_to_compile_or_warm_up():
    """A fresh H200 given the folder another H200 filled (fresh_machine_carried_cache): its first run (0.5B Unsloth, the
    defaults) compiled no kernel, and the engine's warm-up and graph capture took what they take on a machine that has
    run before (same_machine_later), where that machine's first run, every cache empty (fresh_machine_cold), compiled
    54 and spent 13.7 and 10.6 s there."""
    first, cold, warm = (startup("fresh_machine_carried_cache")["q05_unsloth_carried"],
                         startup("fresh_machine_cold")["q05_unsloth_first"],
                         startup("same_machine_later")["q05_unsloth_warm"])
    assert first["kernels_compiled"] == 0 and cold["kernels_compiled"] == 54
    for part in ("engine_warmup_s", "graph_capture_s"):
        assert first[part] < 1.5 * warm[part] + 0.5 < cold[part] / 3, (part, first[part], warm[part], cold[part])
    assert first["process_to_first_step_s"] < 60 < cold["process_to_first_step_s"]
