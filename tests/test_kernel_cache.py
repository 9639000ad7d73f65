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
    (Triton, FlashInfer and the CUDA driver are on the GPU machine only: bench/results/h200/session13)."""
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


H200 = Path(__file__).resolve().parents[1] / "bench" / "results" / "h200" / "session13"


def test_on_the_h200_a_folder_another_machine_filled_held_every_kernel_and_shortened_the_start():
    """s13c, a fresh H200: 0.5B Unsloth with hardware.kernel_cache at the folder s13b's machine filled (its first
    run), then with an empty one and with the default caches (both empty on that machine)."""
    start = {label: run["startup"] for label, run in
             json.loads((H200 / "s13c" / "variants.json").read_text())["runs"].items()}
    listed = json.loads((H200 / "s13c" / "runs" / "q05_unsloth_cold" / "kernel_caches.json").read_text())
    assert start["q05_unsloth_cold"]["kernels_compiled"] == sum(listed["triton"]["kernels"].values()) == 54
    assert start["q05_unsloth_2"]["kernels_compiled"] == 54                 # ~/.triton/cache, empty on that machine
    assert start["q05_unsloth_carried"]["kernels_compiled"] == start["q05_peft_carried"]["kernels_compiled"] == 0
    # vLLM's inspection of the model class came from the folder too (else a fresh Python process runs it)
    assert start["q05_unsloth_carried"]["engine_start_s"] < start["q05_unsloth_cold"]["engine_start_s"] / 3
    cold = min(start[label]["process_to_first_step_s"] for label in ("q05_unsloth_cold", "q05_unsloth_2"))
    assert start["q05_unsloth_carried"]["process_to_first_step_s"] < 0.8 * cold


def test_on_a_fresh_h200_the_carried_folder_left_its_first_run_nothing_to_compile_or_warm_up():
    """s14c, a fresh H200 given the folder s14a's machine filled: its first run (0.5B Unsloth, the defaults) compiled
    no kernel, and the engine's warm-up and graph capture took what they take on a machine that has run before
    (s14b), where s14a's first run, every cache empty, compiled 54 and spent 13.7 and 10.6 s there."""
    runs = {call: json.loads((H200.parent / "session14" / call / "variants.json").read_text())["runs"]
            for call in ("s14a", "s14b", "s14c")}
    first, cold, warm = (runs["s14c"]["q05_unsloth_carried"]["startup"], runs["s14a"]["q05_unsloth_first"]["startup"],
                         runs["s14b"]["q05_unsloth_warm"]["startup"])
    assert first["kernels_compiled"] == 0 and cold["kernels_compiled"] == 54
    for part in ("engine_warmup_s", "graph_capture_s"):
        assert first[part] < 1.5 * warm[part] + 0.5 < cold[part] / 3, (part, first[part], warm[part], cold[part])
    assert first["process_to_first_step_s"] < 60 < cold["process_to_first_step_s"]
