"""The console of a run shows r1exp, not its libraries (r1exp.observe.console): vLLM's, torch's and transformers' log
lines, library warnings, progress bars and C-level stderr go to the run folder's train.log; R1EXP_LIVE=verbose
leaves them on the console. And a job of a sweep run in one process leaves nothing distributed to the next one
(r1exp.__main__.one_job): no `[rank0]:` prefixes, no DDP `find_unused_parameters` warning.

Each check runs in a fresh interpreter: routing changes process-wide state (logging handlers, warnings.showwarning,
import hooks). The real runs (marked slow) are the acceptance test: a default run's console before this module had
the lines listed in NOISE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from r1exp.observe import console

# what a default CPU run printed on the console before (each a line or a bar of a library)
NOISE = ["Triton not installed", "Triton not available", "reduce_op", "NUMA binding", "PAD/BOS/EOS",
         "Loading safetensors checkpoint shards", "Loading weights", "Writing model shards"]
ALWAYS = ["Triton not installed", "reduce_op", "PAD/BOS/EOS", "Loading safetensors checkpoint shards",
          "Loading weights"]   # NUMA binding needs libnuma; Writing model shards only when the tiny model is built


def python(code: str, run_dir: Path, **env) -> tuple[str, str]:
    """Run `code` with RUN (the run folder) defined; its stdout and stderr."""
    run_dir.mkdir(parents=True, exist_ok=True)
    script = f"RUN = {str(run_dir)!r}\n" + textwrap.dedent(code)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    if "R1EXP_LIVE" not in env:
        full_env.pop("R1EXP_LIVE", None)
    # importing vLLM in this test process (other test modules do, at collection) sets VLLM_LOGGING_LEVEL=ERROR in
    # os.environ; inherited, it would drop the vLLM lines this check routes
    full_env.pop("VLLM_LOGGING_LEVEL", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=full_env,
                          cwd=run_dir, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, proc.stderr


def train_log(run_dir: Path) -> str:
    path = run_dir / "train.log"
    return path.read_text() if path.exists() else ""


LOGGING = """
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="console %(name)s: %(message)s")  # as Hydra
    from r1exp.observe import console
    console.route(RUN)
    logging.getLogger("vllm.triton_utils.importing").info("Triton not installed (vllm at import)")
    import torch
    logging.getLogger("torch._library.triton").warning("Triton not available (torch's own handler)")
    from transformers.utils import logging as tl
    tl.get_logger("transformers.trainer_utils").warning("new PAD/BOS/EOS tokens (transformers' own handler)")
    tl.get_logger("transformers.trainer").error("an ERROR of a library")
    import vllm.logger
    vllm.logger._configure_vllm_root_logger()          # what an engine's start does: vLLM's stdout handler
    logging.getLogger("vllm.engine").info("engine started (vLLM's own handler)")
    logging.getLogger("r1exp.anything").info("r1exp's own line")
    logging.getLogger("HYDRA").info("Launching 2 jobs locally")
"""
LIBRARY_LINES = ["(vllm at import)", "(torch's own handler)", "(transformers' own handler)", "(vLLM's own handler)"]


def test_library_log_records_go_to_train_log_and_r1exps_and_library_errors_stay(tmp_path):
    out, err = python(LOGGING, tmp_path)
    log = train_log(tmp_path)
    for line in LIBRARY_LINES:
        assert line not in out + err, line
        assert line in log, line
    assert "an ERROR of a library" in out + err and "an ERROR of a library" in log
    assert "r1exp's own line" in out and "Launching 2 jobs locally" in out
    assert "r1exp's own line" not in log


def test_verbose_leaves_every_library_line_on_the_console(tmp_path):
    out, err = python(LOGGING, tmp_path, R1EXP_LIVE="verbose")
    for line in LIBRARY_LINES:
        assert line in out + err, line
    assert not (tmp_path / "train.log").exists()


def test_a_rank_other_than_0_is_left_alone(tmp_path):
    """Its whole output already goes to rank<N>.log; train.log is rank 0's."""
    out, err = python(LOGGING, tmp_path, RANK="1")
    assert "(torch's own handler)" in out + err and not (tmp_path / "train.log").exists()


def test_library_warnings_go_to_train_log_with_their_source_line_yours_stay(tmp_path):
    lib = tmp_path / "venv" / "lib" / "site-packages" / "fakelib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("import warnings\n\ndef go():\n"
                                     "    warnings.warn('reduce_op is deprecated (library)', FutureWarning)\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_rewards.py").write_text("import warnings\n\ndef go():\n"
                                        "    warnings.warn('check your data (yours)', UserWarning)\n")
    _, err = python(f"""
        import sys
        sys.path[:0] = [{str(lib.parent)!r}, {str(mine)!r}]
        from r1exp.observe import console
        console.route(RUN)
        import fakelib, my_rewards
        fakelib.go()
        my_rewards.go()
    """, tmp_path / "run")
    log = train_log(tmp_path / "run")
    assert "reduce_op is deprecated (library)" not in err and "reduce_op is deprecated (library)" in log
    assert "FutureWarning" in log and "warnings.warn('reduce_op" in log   # the source line, as Python shows it
    assert "check your data (yours)" in err and "yours" not in log


def test_progress_bars_and_c_level_stderr_go_to_train_log(tmp_path):
    out, err = python("""
        import os
        from r1exp.observe import console
        console.route(RUN)
        from transformers.utils import logging as tl
        for _ in tl.tqdm(range(26), desc="Loading weights"):
            pass
        import vllm.model_executor.model_loader.weight_utils as wu
        for _ in wu.tqdm(range(2), desc="Loading safetensors checkpoint shards", bar_format=wu._BAR_FORMAT):
            pass
        with console.stderr_to_train_log():
            os.write(2, b"[W1206 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy (C++)\\n")
        os.write(2, b"stderr is back\\n")
        import vllm.v1.engine.core as core
        print("engine start wrapped:", core.EngineCore.__init__._r1exp_console)
    """, tmp_path)
    log = train_log(tmp_path).splitlines()
    assert "Loading" not in out + err and "NUMA" not in out + err
    assert [line for line in log if line.startswith("Loading weights")] == [
        next(line for line in log if line.startswith("Loading weights: 100%"))]   # its last state, once
    assert any(line.startswith("Loading safetensors checkpoint shards: 100% Completed | 2/2") for line in log)
    assert "[W1206 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy (C++)" in log
    assert "stderr is back" in err and "engine start wrapped: True" in out


def test_a_bar_keeps_its_last_state_as_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(console._sink, "path", tmp_path / "train.log")
    bar = console.BarFile()
    for text in ["\rLoading: 0%", "\rLoading: 50%", "\rLoading: 100% 2/2", "\r" + " " * 20 + "\r"]:
        bar.write(text)
    bar.end_line()   # a bar with leave=False never writes its newline: ended at close
    bar.end_line()
    bar.write("Shards: 1/1\nNext: 0%\rNext: 100%\n")
    assert (tmp_path / "train.log").read_text() == "Loading: 100% 2/2\nShards: 1/1\nNext: 100%\n"


@pytest.mark.parametrize("path, library", [
    (console.__file__, False),
    (str(ROOT / "tests" / "test_console.py"), False),
    ("/somewhere/my_rewards.py", False),
    ("<stdin>", False),
    ("/x/.venv/lib/python3.11/site-packages/vllm/triton_utils/dispatcher.py", True),
    ("/usr/lib/python3/dist-packages/yaml/__init__.py", True),
    ("<frozen importlib._bootstrap>", True),
    (os.__file__, True),
])
def test_what_counts_as_library_code(path, library):
    assert console.library_file(path) is library


@pytest.mark.parametrize("setting, words", [
    ("", set()), ("verbose", {"verbose"}), ("plain, Verbose", {"plain", "verbose"}), ("rich+verbose", {"rich", "verbose"}),
])
def test_the_switch(setting, words, monkeypatch):
    monkeypatch.setenv("R1EXP_LIVE", setting)
    assert console.settings() == words and console.verbose() is ("verbose" in words)


# --- one process, several jobs (r1exp.__main__.one_job) -----------------------------------------------------------

def test_a_job_leaves_no_process_group_and_no_rank_variables_to_the_next(tmp_path):
    """What TRL's in-process vLLM engine does during a job: RANK/LOCAL_RANK/WORLD_SIZE/MASTER_* and a one-process
    gloo group. Before, the next job read LOCAL_RANK and trained under DDP, and C++ warnings said [rank0]:."""
    out, _ = python("""
        import json, os
        import torch.distributed as dist
        from r1exp.__main__ import one_job
        os.environ["MASTER_ADDR"] = "kept.example"
        with one_job():
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_PORT="29555", MASTER_ADDR="localhost")
            dist.init_process_group("gloo", rank=0, world_size=1)
        names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR")
        print(json.dumps({"group": dist.is_initialized(), **{n: os.environ.get(n) for n in names}}))
    """, tmp_path)
    after = json.loads(out.splitlines()[-1])
    assert after == {"group": False, "RANK": None, "LOCAL_RANK": None, "WORLD_SIZE": None, "MASTER_PORT": None,
                     "MASTER_ADDR": "kept.example"}


def test_a_launched_rank_keeps_its_environment(tmp_path):
    out, _ = python("""
        import os
        from r1exp.__main__ import one_job
        with one_job():
            os.environ["MASTER_PORT"] = "29600"
        print(os.environ["LOCAL_RANK"], os.environ["MASTER_PORT"])
    """, tmp_path, LOCAL_RANK="1", WORLD_SIZE="2", RANK="1")
    assert out.split() == ["1", "29600"]


# --- real runs ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_default_run_prints_no_library_noise_and_train_log_keeps_it(cli):
    result = cli("logger=none", "trainer.max_steps=2", env={"R1EXP_LIVE": "plain"})
    assert result.code == 0, result.output
    for line in NOISE:
        assert line not in result.output, line
    log = train_log(result.run_dir)
    for line in ALWAYS:
        assert line in log, line
    assert "full logs and library output in" in result.stdout and "step 2/2" in result.stdout


@pytest.mark.slow
def test_r1exp_live_verbose_shows_the_libraries_on_the_console(cli):
    result = cli("logger=none", "trainer.max_steps=2", env={"R1EXP_LIVE": "plain,verbose"})
    assert result.code == 0, result.output
    for line in ("reduce_op", "Loading weights", "PAD/BOS/EOS", "Loading safetensors checkpoint shards"):
        assert line in result.output, line
    assert "step 2/2" in result.stdout


@pytest.mark.slow
def test_the_second_job_of_a_sweep_in_one_process_has_no_rank_prefix_and_no_ddp(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "trainer.learning_rate=1e-3,2e-3", "logger=none", "trainer.max_steps=2",
                      f"hydra.sweep.dir={sweep}"], sweep, env={"R1EXP_LIVE": "plain,verbose"})  # all on the console
    assert result.code == 0, result.output
    assert "[rank0]:" not in result.output and "find_unused_parameters" not in result.output
    assert "OMP_NUM_THREADS/MKL_NUM_THREADS unset" not in result.output   # accelerate's multi-CPU set-up: gone too
    for job in ("0", "1"):
        manifest = json.loads((sweep / job / "run.json").read_text())
        assert manifest["status"] == "ok" and manifest["distributed"]["world_size"] == 1


def test_a_hook_that_no_longer_fits_costs_the_quiet_never_the_import(tmp_path, monkeypatch):
    import types

    monkeypatch.setattr(console._sink, "path", tmp_path / "train.log")
    changed = types.ModuleType("vllm.logger")   # an upstream release without _configure_vllm_root_logger
    console._HOOKS["vllm.logger"][0](changed)
    assert "_quiet_vllm did not apply to vllm.logger: AttributeError" in (tmp_path / "train.log").read_text()
