"""The memory plan against figures the anchors publish (bench/published_memory.yaml: each figure, its source, quote,
setting and what the source leaves unstated).

    python bench/published_memory.py            # writes bench/results/published_memory.md and .json

Each comparison below puts one published figure beside the plan of the same setting, as r1exp overrides, and names
the planned quantity it compares: `trainer` (the training process without generating: prime-rl measures its trainer
alone), `engine_weights` (the weights vLLM loads, from its start-up log), `kv_from_fraction` (what a float
gpu_memory_utilization leaves vLLM for its KV cache: fraction x device - weights - overhead, as vLLM's log says),
`peak` (the plan's predicted peak). The models' shapes come from their config.json (tests/fixtures/model_configs).
tests/test_published_memory.py checks that the committed table is what this script computes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIGURES = ROOT / "bench" / "published_memory.yaml"
OUT = ROOT / "bench" / "results" / "published_memory"
CONFIGS = ROOT / "tests" / "fixtures" / "model_configs"
GiB_PER_MiB = 1 / 1024


def model(folder: str) -> str:
    return f"model.name_or_path={CONFIGS / folder}"


# prime-rl's trainer: parameters in float32 (FSDP2, bf16 compute), one sequence of N tokens per micro-batch, gradient
# checkpointing (its "Recompute"), no reference model, no engine on the device.
# r1exp plans TRL's float32 model with float32 activations; prime-rl computes in bf16 (its activations are half).
PRIME_RL_ASSUMED = ("activations planned in float32, as TRL trains a float32 model; prime-rl keeps float32 parameters "
                    "but computes (and saves activations) in bf16")
PRIME_RL = ["engine=hf", "model.dtype=float32", "trainer.per_device_train_batch_size=1", "trainer.num_generations=2",
            "trainer.gradient_accumulation_steps=2", "trainer.gradient_checkpointing=true", "++data.max_prompt_tokens=256"]


def unsloth_notebook(folder: str, r: int, prompt: int, completion: int, generations: int, fraction: float,
                     gpu: float, *extra: str) -> tuple:
    """An Unsloth notebook's run: fast_inference, its LoRA rank, lengths and generations, and the fraction vLLM's log
    shows it really got."""
    return (model(folder), "loader=unsloth", "engine=vllm", f"model.lora.r={r}", f"model.lora.alpha={r}",
            f"loader.max_lora_rank={r}", f"trainer.num_generations={generations}",
            f"trainer.per_device_train_batch_size={generations}", "trainer.gradient_accumulation_steps=1",
            f"trainer.max_completion_length={completion}", f"++data.max_prompt_tokens={prompt}",
            f"engine.gpu_memory_utilization={fraction}", f"hardware.gpu_memory_gb={gpu}", *extra)


LLAMA31_T4 = unsloth_notebook("meta-llama__Llama-3.1-8B-Instruct", 32, 256, 768, 6, 0.5943, 14.74,
                              "loader.load_in_4bit=true", "model.dtype=float16")
QWEN3_4B_T4 = unsloth_notebook("Qwen__Qwen3-4B-Base", 32, 202, 1846, 4, 0.6934, 14.74, "model.dtype=float16")
QWEN25_3B_T4 = unsloth_notebook("Qwen__Qwen2.5-3B-Instruct", 64, 256, 200, 8, 0.4966, 14.74,
                                "loader.load_in_4bit=true", "model.dtype=float16")
PHI4_T4 = unsloth_notebook("microsoft__phi-4", 16, 256, 200, 6, 0.6952, 14.74, "loader.load_in_4bit=true",
                           "model.dtype=float16")
MISTRAL_4090 = unsloth_notebook("mistralai__Mistral-7B-Instruct-v0.3", 32, 256, 768, 6, 0.5893, 23.63,
                                "loader.load_in_4bit=true")
LLAMA32_A100 = unsloth_notebook("meta-llama__Llama-3.2-3B-Instruct", 64, 288, 1760, 4, 0.7908, 39.56)
LLAMA31_20K = unsloth_notebook("meta-llama__Llama-3.1-8B-Instruct", 32, 1024, 19456, 8, 0.9, 79.1,
                               "loader.load_in_4bit=true", "engine.kv_cache_gb=2.5")


@dataclass(frozen=True)
class Comparison:
    figure: str            # its id in bench/published_memory.yaml
    quantity: str          # trainer | engine_weights | kv_from_fraction | peak
    overrides: tuple
    assumed: str = ""      # what the comparison assumes where the source is silent


COMPARISONS = (
    Comparison("prime-rl/qwen3-0.6b-lora16-16k-recompute-1xh100", "trainer",
               (model("Qwen__Qwen3-0.6B"), *PRIME_RL, "trainer.max_completion_length=16128", "model.lora.r=16",
                "model.lora.alpha=32", "hardware.gpu_memory_gb=79.18"), PRIME_RL_ASSUMED),
    Comparison("prime-rl/qwen3-0.6b-full-16k-recompute-1xh100", "trainer",
               (model("Qwen__Qwen3-0.6B"), *PRIME_RL, "loader=full", "trainer.learning_rate=1e-6",
                "trainer.max_completion_length=16128", "hardware.gpu_memory_gb=79.18"), PRIME_RL_ASSUMED),
    Comparison("prime-rl/qwen3-4b-lora16-16k-recompute-1xh100", "trainer",
               (model("Qwen__Qwen3-4B-Instruct-2507"), *PRIME_RL, "trainer.max_completion_length=16128",
                "model.lora.r=16", "model.lora.alpha=32", "hardware.gpu_memory_gb=79.18"), PRIME_RL_ASSUMED),
    Comparison("prime-rl/qwen3-4b-lora16-64k-recompute-1xh100", "trainer",
               (model("Qwen__Qwen3-4B-Instruct-2507"), *PRIME_RL, "trainer.max_completion_length=65280",
                "model.lora.r=16", "model.lora.alpha=32", "hardware.gpu_memory_gb=79.18"), PRIME_RL_ASSUMED),
    Comparison("unsloth-nb/llama31-8b-4bit-t4-vllm-weights", "engine_weights", LLAMA31_T4),
    Comparison("unsloth-nb/llama31-8b-4bit-t4-vllm-kv", "kv_from_fraction", LLAMA31_T4),
    Comparison("unsloth-nb/qwen3-4b-16bit-t4-vllm-weights", "engine_weights", QWEN3_4B_T4),
    Comparison("unsloth-nb/qwen3-4b-16bit-t4-vllm-kv", "kv_from_fraction", QWEN3_4B_T4),
    Comparison("unsloth-nb/qwen25-3b-4bit-t4-vllm-weights", "engine_weights", QWEN25_3B_T4,
               "Unsloth's dynamic 4-bit keeps three MLPs in 16 bit; r1exp plans plain NF4"),
    Comparison("unsloth-nb/qwen25-3b-4bit-t4-vllm-kv", "kv_from_fraction", QWEN25_3B_T4),
    Comparison("unsloth-nb/phi4-14b-4bit-t4-vllm-weights", "engine_weights", PHI4_T4),
    Comparison("unsloth-nb/phi4-14b-4bit-t4-vllm-kv", "kv_from_fraction", PHI4_T4),
    Comparison("unsloth-nb/mistral-7b-4bit-4090-vllm-weights", "engine_weights", MISTRAL_4090),
    Comparison("unsloth-nb/mistral-7b-4bit-4090-vllm-kv", "kv_from_fraction", MISTRAL_4090),
    Comparison("unsloth-nb/llama32-3b-bf16-a100-vllm-weights", "engine_weights", LLAMA32_A100),
    Comparison("unsloth-nb/llama32-3b-bf16-a100-vllm-kv", "kv_from_fraction", LLAMA32_A100),
    Comparison("unsloth/llama31-8b-grpo-20k-kv-cache", "engine_kv_cache", LLAMA31_20K,
               "Unsloth's 2.5 GB is the KV cache of one 20K sequence ('we shall leave it at 1 ... otherwise you will "
               "need 20GB'): planned with engine.kv_cache_gb=2.5, as a run that generates its 8 in waves would"),
    Comparison("unsloth/llama31-8b-grpo-20k-total", "peak", LLAMA31_20K,
               "4-bit Llama-3.1-8B, 8 generations of 20,480 tokens, one sequence's KV cache (as Unsloth's figure); "
               "Unsloth's figure is a calculation, not a measurement"),
)


def planned(comparison: Comparison) -> tuple[float, dict]:
    from r1exp.checks.validate import preflight
    from r1exp.config.compose import compose
    from r1exp.machine.facts import Environment

    cfg = compose(["dry_run=true", "logger=none", *comparison.overrides])
    gpu = float(next(o.split("=")[1] for o in comparison.overrides if o.startswith("hardware.gpu_memory_gb=")))
    checked = preflight(cfg, Environment(versions={}, gpus=(gpu,), cpu_count=16), dry_run=True)
    errors = [f"{p.rule}: {p.key}: {p.why}" for p in checked.problems if p.severity == "error"]
    if checked.run is None:
        raise SystemExit(f"{comparison.figure}: the plan was refused: {errors}")
    plan = checked.run.plan
    terms = plan.terms
    training = sum(gb for name, gb in terms.items() if name != "generation_kv_cache" and not name.startswith("engine"))
    value = {"trainer": training, "peak": plan.total_gb, "engine_weights": terms.get("engine_weights"),
             "engine_kv_cache": terms.get("engine_kv_cache"),
             "kv_from_fraction": (plan.gpu_memory_utilization or 0) * (plan.device_gb or 0)
             - terms.get("engine_weights", 0) - terms.get("engine_overhead", 0)}[comparison.quantity]
    return float(value), {k: round(v, 3) for k, v in terms.items()}


def source_link(source: dict) -> str:
    if source.get("url"):
        return source["url"]
    return f"https://github.com/{source['repo']}/blob/{source['commit']}/{source['path']}".replace(" ", "%20")


def published_gib(figure: dict) -> float:
    value, unit = float(figure["figure"]), figure["unit"]
    return value * GiB_PER_MiB if unit == "MiB" else value   # the sources' GB are GiB (bench/published_memory.yaml)


def rows() -> list[dict]:
    figures = {f["id"]: f for f in yaml.safe_load(FIGURES.read_text())}
    out = []
    for c in COMPARISONS:
        figure = figures[c.figure]
        plan, terms = planned(c)
        published = published_gib(figure)
        out.append({"figure": c.figure, "published_gib": round(published, 3), "planned_gib": round(plan, 3),
                    "ratio": round(plan / published, 3), "quantity": c.quantity, "kind": figure.get("kind"),
                    "reliability": figure.get("reliability"), "source": source_link(figure["source"]),
                    "quote": figure["source"].get("quote"), "assumed": c.assumed,
                    "overrides": list(c.overrides), "terms": terms})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["# The memory plan against published figures", "",
             "Made by `python bench/published_memory.py` (no GPU: the plan is computed from each setting; figures, "
             "quotes and settings: bench/published_memory.yaml). Ratio = planned / published.", "",
             "| figure | quantity | published GiB | planned GiB | ratio | kind | assumed |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in table:
        lines.append(f"| [{r['figure']}]({r['source']}) | {r['quantity']} | {r['published_gib']:.2f} | "
                     f"{r['planned_gib']:.2f} | {r['ratio']:.2f} | {r['kind']}, {r['reliability']} | "
                     f"{r['assumed'] or '-'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    table = rows()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
