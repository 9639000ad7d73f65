"""A public recipe (tests/recipes/corpus.yaml) as the r1exp command line a user coming from its project would type.

The recipe's own values are kept; what changes is where they go (docs/recipes.md has the same table for users):
- the model by its hub id (its config.json is put in a Hugging Face cache by the test), its dtype, and for Unsloth
  its max_seq_length; a chat template the recipe sets becomes model.chat_template;
- full fine-tuning -> loader=full, LoRA -> loader=peft (TRL) or loader=unsloth, QLoRA -> load_in_4bit=true;
- the vLLM mode -> engine=vllm (colocate; Unsloth's fast_inference), engine=vllm_server (a server on its own GPUs:
  launched by r1exp when it shares the trainers' machine), engine=hf (no vLLM); vllm_gpu_memory_utilization and
  Unsloth's gpu_memory_utilization -> engine.gpu_memory_utilization;
- the accelerate launch -> distributed=<strategy> with the process and machine counts;
- GRPOConfig keys unchanged (++trainer.<key>), except the ones r1exp derives from a group (use_vllm, vllm_*,
  output_dir, report_to), the ones today's TRL renamed or removed (max_prompt_length -> data.max_prompt_tokens,
  warmup_ratio -> warmup_steps) and the recipe's own script arguments (open-r1's code_*); TRL's evaluation keys
  as they are, with the dataset's eval split as data.eval_split;
- batch sizes of TRL <= 0.14 counted prompts (batch_semantics: prompts): today's count is x num_generations;
- the reward functions by the r1exp reward of the same kind; a notebook's own format tags -> data.tags.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_CONFIGS = ROOT / "tests" / "fixtures" / "model_configs"
CHAT_TEMPLATE = ROOT / "tests" / "recipes" / "chat_template.jinja"

# hub ids whose config.json has the shape of a vendored one: fine-tunes, quantized copies, base and instruct
SAME_SHAPE = {
    "Qwen/Qwen2.5-Coder-7B-Instruct": "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-72B": "Qwen/Qwen2.5-72B-Instruct",
    "Qwen/Qwen2.5-7B": "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/meta-Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "unsloth/Phi-4": "microsoft/phi-4",
    "unsloth/mistral-7b-instruct-v0.3-bnb-4bit": "mistralai/Mistral-7B-Instruct-v0.3",
    "unsloth/Qwen3-4B-Base": "Qwen/Qwen3-4B-Base",
    "unsloth/DeepSeek-R1-0528-Qwen3-8B": "Qwen/Qwen3-8B",
    "unsloth/gemma-3-1b-it": "google/gemma-3-1b-it",
    "unsloth/gpt-oss-20b": "openai/gpt-oss-20b",
    "unsloth/Qwen3-8B": "Qwen/Qwen3-8B",
    "unsloth/Qwen3-32B": "Qwen/Qwen3-32B",
}
REWARDS = {"accuracy": "accuracy", "format": "format", "tag_count": "tag_count", "reasoning_steps": "reasoning_steps",
           "cosine": "cosine", "repetition_penalty": "repetition", "length": "length"}
DERIVED = {"use_vllm", "vllm_mode", "vllm_device", "vllm_gpu_memory_utilization", "vllm_server_host",
           "vllm_tensor_parallel_size", "vllm_sampling_params", "output_dir", "report_to", "reward_weights",
           "max_prompt_length", "warmup_ratio", "code_eval_scoring_mode", "code_eval_test_batch_size", "code_language"}
ASSUMED_GPU_GIB = 79.1   # an entry that does not name its GPU: an 80 GB card, the anchors' usual one


def hub_config(hub_id: str) -> Path | None:
    """The vendored config.json of a hub id (or of the model whose shape it has)."""
    folder = MODEL_CONFIGS / SAME_SHAPE.get(hub_id, hub_id).replace("/", "__")
    return folder / "config.json" if (folder / "config.json").is_file() else None


def hydra_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'" if any(c in value for c in " ,:[]{}()=<>") else value
    return repr(value) if isinstance(value, float) else str(value)


def overrides(entry: dict) -> list[str]:
    hw, launch, model, adapter = entry["hardware"], entry["launch"], entry["model"], entry["adapter"]
    trainer = dict(entry.get("trainer") or {})
    unsloth = entry.get("unsloth") or {}
    out = ["dry_run=true", "logger=none", f"hardware.gpu_memory_gb={hw.get('gpu_memory_gib') or ASSUMED_GPU_GIB}"]
    per_node = hw.get("gpus_per_node") or 1
    out.append(f"hardware.num_gpus={per_node}")
    if model.get("name_or_path"):
        out.append(f"model.name_or_path={model['name_or_path']}")
    else:   # a report that does not name its model (redacted): a 7B, the anchors' usual size
        out.append("model=qwen7b")
    if model.get("dtype") in ("float16", "bfloat16", "float32"):
        out.append(f"model.dtype={model['dtype']}")
    if model.get("chat_template") == "present":
        out.append(f"model.chat_template={CHAT_TEMPLATE}")
    out += _adapter(entry, adapter, unsloth, model)
    out += _engine(entry, launch, trainer, unsloth, per_node)
    out += _distributed(launch, per_node, hw)
    out += _trainer(entry, trainer)
    out += _data(entry, trainer)
    return out


def _adapter(entry, adapter, unsloth, model) -> list[str]:
    kind = adapter["type"]
    if entry["loader"] == "unsloth":
        out = ["loader=unsloth"]
        if unsloth.get("standby"):
            out.append("loader.standby=true")
        if unsloth.get("max_lora_rank"):
            out.append(f"loader.max_lora_rank={unsloth['max_lora_rank']}")
        if model.get("max_seq_length"):
            out.append(f"model.max_seq_length={model['max_seq_length']}")
        if unsloth.get("fast_inference") is False and entry["launch"].get("vllm_mode") == "colocate":
            out.append("loader.fast_inference=false")
    else:
        out = ["loader=full"] if kind == "full" else ["loader=peft"]
    if kind == "qlora" or unsloth.get("load_in_4bit"):
        out.append("loader.load_in_4bit=true")
    if kind != "full":
        for key in ("r", "alpha", "dropout"):
            if adapter.get(key) is not None:
                out.append(f"model.lora.{key}={adapter[key]}")
        if adapter.get("target_modules"):
            out.append(f"model.lora.target_modules={hydra_value(adapter['target_modules'])}")
    return out


def _engine(entry, launch, trainer, unsloth, per_node) -> list[str]:
    mode = launch.get("vllm_mode")
    if trainer.get("use_vllm") is False or mode in (None, "none"):
        return ["engine=hf"] if mode in (None, "none") else []
    util = unsloth.get("gpu_memory_utilization") or trainer.get("vllm_gpu_memory_utilization")
    engine = entry.get("vllm_engine") or {}
    if mode == "colocate":
        out = ["engine=vllm"]
        tp = trainer.get("vllm_tensor_parallel_size")
        if tp and tp > 1:
            out.append(f"engine.tensor_parallel_size={tp}")
    else:   # server, or TRL <= 0.16's engine on a spare GPU (vllm_device): today a server on that GPU
        out = ["engine=vllm_server"]
        tp = launch.get("server_tensor_parallel_size") or 1
        out.append(f"engine.tensor_parallel_size={tp}")
        server_gpus = launch.get("server_gpus") or tp
        trainers = launch.get("trainer_processes") or 0
        if server_gpus + trainers <= per_node:   # on the trainers' machine: r1exp launches it on the spare GPUs
            out += ["engine.launch=true", f"engine.gpus={hydra_value(list(range(server_gpus)))}"]
    if util:
        out.append(f"engine.gpu_memory_utilization={util}")
    if engine.get("max_model_len"):
        out.append(f"engine.max_model_len={engine['max_model_len']}")
    return out


def _distributed(launch, per_node, hw) -> list[str]:
    strategy, processes = launch.get("distributed"), launch.get("trainer_processes") or 1
    if strategy in (None, "none") or processes < 2:
        return []
    machines = max(1, math.ceil(processes / per_node))
    out = [f"distributed={strategy}", f"distributed.num_processes={processes}"]
    if machines > 1:
        out += [f"distributed.num_machines={machines}", "distributed.main_process_ip=10.0.0.1",
                "distributed.main_process_port=29500"]
    return out


def _trainer(entry, trainer) -> list[str]:
    values = {k: v for k, v in trainer.items() if k not in DERIVED}
    if "warmup_ratio" in trainer:
        values["warmup_steps"] = trainer["warmup_ratio"]   # transformers 5: a float < 1 is a share of the steps
    if entry.get("batch_semantics") == "prompts":   # TRL <= 0.14 counted prompts, each with num_generations
        gens = trainer.get("num_generations") or 8
        values["per_device_train_batch_size"] = (trainer.get("per_device_train_batch_size") or 8) * gens
    return [f"++trainer.{k}={hydra_value(v)}" for k, v in values.items()]


def _data(entry, trainer) -> list[str]:
    data = entry.get("dataset") or {}
    out = []
    if data.get("name") and " " not in data["name"]:   # a hub dataset (not a description of generated data)
        out += ["data=jsonl", f"data.path={data['name']}"]
        if data.get("config"):
            out.append(f"data.subset={data['config']}")
        for key in ("prompt_field", "answer_field"):
            if data.get(key):
                out.append(f"data.{key}={data[key]}")
        if data.get("eval_split") and " " not in str(data["eval_split"]):
            out.append(f"data.eval_split={data['eval_split']}")
    if trainer.get("max_prompt_length"):
        out.append(f"++data.max_prompt_tokens={trainer['max_prompt_length']}")
    rewards = [REWARDS[r] for r in entry.get("rewards") or [] if r in REWARDS]
    if rewards:
        out.append(f"reward={hydra_value(sorted(set(rewards), key=rewards.index))}")
    tags = entry.get("reward_tags") or []
    if len(tags) == 4 and all(t.startswith("<") for t in tags):
        out.append(f"+data.tags={{think:{hydra_value(tags[:2])},answer:{hydra_value(tags[2:])}}}")
    return out


def put_configs_in_cache(hf_home: Path, hub_ids) -> None:
    """Each model's config.json in huggingface_hub's cache layout (the weights are not needed for a dry run)."""
    for hub_id in hub_ids:
        config = hub_config(hub_id)
        if config is None:
            continue
        snapshot = hf_home / "hub" / f"models--{hub_id.replace('/', '--')}" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text(json.dumps(json.loads(config.read_text())))
        refs = snapshot.parents[1] / "refs"
        refs.mkdir(exist_ok=True)
        (refs / "main").write_text("0" * 40)
