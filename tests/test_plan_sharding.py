"""Full fine-tuning, sharded runs, tensor-parallel engines and what Unsloth changes itself, as the plan sees them.

Each case is arithmetic a reader can redo by hand: ZeRO-2 divides gradients and optimizer states over the processes,
ZeRO-3 and FSDP the weights too (plus the two layers gathered while computing); DeepSpeed's optimizer keeps 12 bytes
per parameter (float32 master weights and Adam's two moments), torch's AdamW two moments in the weights' precision;
a vLLM server divides its weights over its tensor-parallel GPUs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from r1exp.checks.validate import preflight
from r1exp.config.compose import compose
from r1exp.machine.facts import Environment
from r1exp.plan.memory import GiB
from r1exp.plan.sharding import sharding_of

CONFIGS = Path(__file__).resolve().parent / "fixtures" / "model_configs"
GPU_BOX = Environment(versions={}, gpus=(79.1,) * 8, cpu_count=64)
QWEN72B = f"model.name_or_path={CONFIGS / 'Qwen__Qwen2.5-72B-Instruct'}"
QWEN7B = f"model.name_or_path={CONFIGS / 'Qwen__Qwen2.5-7B-Instruct'}"
P72 = 72_706_203_648   # Qwen2.5-72B-Instruct, counted from its config (tests/test_architecture.py)


def plan(*overrides, env=GPU_BOX):
    checked = preflight(compose(["dry_run=true", "hardware.gpu_memory_gb=79.1", *overrides]), env, dry_run=True)
    assert checked.run is not None, [p for p in checked.problems if p.severity == "error"]
    return checked.run.plan, checked.problems


@pytest.mark.parametrize("strategy, weights, gradients, optimizer", [
    ("none", 1, 1, 1),
    ("ddp", 1, 1, 1),
    ("deepspeed_zero2", 1, 8, 8),
    ("deepspeed_zero3", 8, 8, 8),
    ("fsdp", 8, 8, 8),
])
def test_what_each_strategy_divides(strategy, weights, gradients, optimizer):
    processes = 1 if strategy == "none" else 8
    cfg = compose([f"distributed={strategy}", f"distributed.num_processes={processes}"])
    shards = sharding_of(cfg)
    assert (shards.weights, shards.gradients, shards.optimizer) == (weights, gradients, optimizer)


def test_full_fine_tuning_under_zero3_over_32_processes():
    """TRL's 72B recipe: ZeRO-3 over 4 x 8 processes, the vLLM server on a node of its own with TP=8."""
    p, _ = plan(QWEN72B, "loader=full", "trainer.learning_rate=1e-6", "distributed=deepspeed_zero3",
                "distributed.num_processes=32", "distributed.num_machines=4", "distributed.main_process_ip=10.0.0.1",
                "distributed.main_process_port=29500", "hardware.num_gpus=8", "engine=vllm_server",
                "engine.tensor_parallel_size=8")
    weights = P72 * 2 / GiB
    assert p.terms["weights"] == pytest.approx(weights / 32 + weights * 2 / 80)   # a shard + two gathered layers
    assert p.terms["gradients"] == pytest.approx(weights / 32)
    assert p.terms["optimizer"] == pytest.approx(P72 * 12 / GiB / 32)
    assert "lora+optimizer" not in p.terms
    assert p.terms["server_weights_per_gpu"] == pytest.approx(weights / 8)
    assert p.fits and p.sharding["world"] == 32


def test_full_fine_tuning_on_one_gpu_counts_adamw_in_the_weights_precision():
    p, _ = plan(QWEN7B, "loader=full", "trainer.learning_rate=1e-6", "engine=hf")
    params = 7_615_616_512
    assert p.terms["gradients"] == pytest.approx(params * 2 / GiB)
    assert p.terms["optimizer"] == pytest.approx(params * 4 / GiB)   # two bf16 moments
    assert p.trainer_gb > 4 * params * 2 / GiB   # weights, gradients and two moments: 56 GiB before activations


def test_full_fine_tuning_with_beta_holds_a_reference_copy():
    with_ref, _ = plan(QWEN7B, "loader=full", "trainer.learning_rate=1e-6", "trainer.beta=0.04",
                       "distributed=deepspeed_zero3", "distributed.num_processes=8", "hardware.num_gpus=8")
    assert with_ref.terms["reference_model"] == pytest.approx(with_ref.terms["weights"])


def test_full_fine_tuning_warns_at_a_lora_learning_rate():
    _, problems = plan(QWEN7B, "loader=full", "trainer.learning_rate=1e-4", "distributed=deepspeed_zero3",
                       "distributed.num_processes=8", "hardware.num_gpus=8")
    assert [(p.rule, p.severity) for p in problems if p.key == "trainer.learning_rate"] == [("loader.full_lr", "warning")]


def test_a_colocated_engine_divides_its_weights_over_tensor_parallel_gpus():
    one, _ = plan(QWEN7B, "distributed=ddp", "distributed.num_processes=2", "hardware.num_gpus=2")
    two, _ = plan(QWEN7B, "distributed=ddp", "distributed.num_processes=2", "hardware.num_gpus=2",
                  "engine.tensor_parallel_size=2")
    assert two.terms["engine_weights"] == pytest.approx(one.terms["engine_weights"] / 2)


def test_a_server_too_big_for_one_gpu_names_tensor_parallelism():
    checked = preflight(compose([QWEN72B, "dry_run=true", "hardware.gpu_memory_gb=79.1", "engine=vllm_server",
                                 "hardware.num_gpus=8", "loader=full", "trainer.learning_rate=1e-6",
                                 "distributed=deepspeed_zero3", "distributed.num_processes=8"]), GPU_BOX,
                        dry_run=True)
    [p] = [p for p in checked.problems if p.key == "engine.tensor_parallel_size" and p.severity == "error"]
    assert "any gpu_memory_utilization" in p.why and "engine.tensor_parallel_size=2" in p.fix


def test_auto_leaves_headroom():
    """auto never plans the whole device: when the whole generation batch's KV cache does not fit beside training,
    the engine gets what leaves 5% of the device free, and generates in waves."""
    p, _ = plan(QWEN7B, "trainer.per_device_train_batch_size=32", "trainer.gradient_accumulation_steps=16",
                "trainer.max_completion_length=1536", "engine.sleep_mode=false")
    assert any("waves" in note for note in p.notes)
    assert p.total_gb == pytest.approx(0.95 * 79.1)


def test_unsloths_utilization_is_a_ceiling():
    """Unsloth's notebooks ask 0.9 of a T4 and run: Unsloth hands vLLM less. The plan lowers it to what fits."""
    p, _ = plan(f"model.name_or_path={CONFIGS / 'Qwen__Qwen2.5-3B-Instruct'}", "loader=unsloth", "engine=vllm",
                "engine.gpu_memory_utilization=0.9", "loader.load_in_4bit=true", "model.lora.r=64",
                "loader.max_lora_rank=64", "trainer.max_completion_length=200", "+data.max_prompt_tokens=256",
                "trainer.per_device_train_batch_size=6", "trainer.num_generations=6",
                "trainer.gradient_accumulation_steps=1", "hardware.gpu_memory_gb=14.7",
                env=Environment(versions={}, gpus=(14.7,)))
    assert p.gpu_memory_utilization < 0.9 and p.fits
    assert any("ceiling" in note for note in p.notes)


def test_a_fraction_unsloth_can_start_with_stays_the_users_elsewhere():
    """With loader=peft, TRL gives vLLM exactly the fraction asked: a reservation, not a ceiling."""
    p, _ = plan(QWEN7B, "engine.gpu_memory_utilization=0.3")
    assert p.gpu_memory_utilization == 0.3


def test_unsloths_standby_fraction_is_named_and_r1exps_wins():
    """Unsloth's standby picks its own fraction by GPU size (0.925 x 0.95 on an 80 GB card); r1exp passes its plan's."""
    p, _ = plan(QWEN7B, "loader=unsloth", "engine=vllm", "loader.standby=true")
    [note] = [n for n in p.notes if n.startswith("standby:")]
    assert "0.879" in note and f"planned {p.gpu_memory_utilization}" in note
