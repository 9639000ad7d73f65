"""A probe, not part of r1exp: could TRL's colocate engine take only the LoRA weights each step?

    python bench/lora_sync_probe.py [--model FOLDER] [--rank 16] [--batch 32] [--tokens 24] [--repeats 5]
                                    [--out bench/results/cpu/lora_sync_probe]

With stock vLLM APIs only: an engine started with `enable_lora=True`, the PEFT adapter written to a folder in
memory-backed storage (/dev/shm when there is one) each "step", and generation with
`LoRARequest(..., load_inplace=True)`, which reloads the adapter under the same id. Measured against what TRL does
today: merge the LoRA into the base weights, push every tensor with `load_weights`, unmerge. Also checks that the
engine with the adapter gives the log-probs of the PEFT model (prompt log-probs of the same token sequences) and how
far the merged push is from them. Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from gpu_floor import single_process_rendezvous  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def probe(model_dir: str, rank: int, batch: int, tokens: int, repeats: int, graphs: bool = False) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    single_process_rendezvous()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":   # vLLM on CPU takes pushed weights only with r1exp's patch (r1exp/patches/vllm_cpu_linear.py)
        from r1exp.patches.vllm_cpu_linear import prepare_cpu_engine

        prepare_cpu_engine(log=lambda *_: None)
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device)
    tok = AutoTokenizer.from_pretrained(model_dir)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets,
                                                  lora_dropout=0.0, task_type="CAUSAL_LM"))
    with torch.no_grad():   # a trained adapter: B is no longer zero
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    max_len = min(1024, int(getattr(model.config, "max_position_embeddings", 1024) or 1024))
    kwargs = dict(model=model_dir, dtype="bfloat16", enforce_eager=not graphs, max_model_len=max_len, seed=0,
                  distributed_executor_backend="external_launcher", max_num_batched_tokens=4096)
    if device == "cpu":
        kwargs["kv_cache_memory_bytes"] = 2**28
    else:
        kwargs["gpu_memory_utilization"] = 0.3
    llm = LLM(**kwargs, enable_lora=True, max_lora_rank=rank, max_loras=1)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    adapter_dir = Path(tempfile.mkdtemp(prefix="r1exp-lora-", dir=shm))
    prompts = [{"prompt_token_ids": tok(f"What is {i} + {i + 3}?")["input_ids"]} for i in range(batch)]
    sampling = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=1.0, seed=0, logprobs=0)
    request = LoRARequest("policy", 1, str(adapter_dir), load_inplace=True)

    def save_adapter():
        peft_model.save_pretrained(str(adapter_dir))

    save_s = _median_time(save_adapter, repeats)
    llm.generate(prompts, sampling, lora_request=request, use_tqdm=False)   # warm-up, first load
    gen_lora_reload_s = _median_time(lambda: llm.generate(prompts, sampling, lora_request=request, use_tqdm=False),
                                     repeats)
    steady = LoRARequest("policy-steady", 2, str(adapter_dir))
    llm.generate(prompts, sampling, lora_request=steady, use_tqdm=False)
    gen_lora_s = _median_time(lambda: llm.generate(prompts, sampling, lora_request=steady, use_tqdm=False), repeats)
    gen_base_s = _median_time(lambda: llm.generate(prompts, sampling, use_tqdm=False), repeats)

    # exactness: the PEFT model's log-probs of fixed sequences vs the engine with the adapter, and vs merged weights
    seqs = [p["prompt_token_ids"] + o.outputs[0].token_ids[:8]
            for p, o in zip(prompts[:4], llm.generate(prompts[:4], sampling, lora_request=steady, use_tqdm=False))]
    score = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)

    def engine_logps(lora):
        outs = llm.generate([{"prompt_token_ids": s} for s in seqs], score, lora_request=lora, use_tqdm=False)
        return [[next(iter(d.values())).logprob for d in o.prompt_logprobs[1:]] for o in outs]

    def trainer_logps(m):
        rows = []
        with torch.no_grad():
            for s in seqs:
                ids = torch.tensor([s], device=device)
                logits = m(input_ids=ids).logits.float()[0, :-1]
                rows.append(logits.log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0].tolist())
        return rows

    def max_gap(a, b):
        return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))

    trainer = trainer_logps(peft_model)
    with_adapter = engine_logps(steady)
    worker_model = llm.llm_engine.model_executor.driver_worker.model_runner.model

    def merge_and_push():   # what TRL's sync_weights does, tensor by tensor
        peft_model.merge_adapter()
        for name, param in peft_model.named_parameters():
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            if peft_model.prefix in name:
                continue
            worker_model.load_weights([(name, param.data)])
        peft_model.unmerge_adapter()
        llm.reset_prefix_cache()

    merge_push_s = _median_time(merge_and_push, repeats)
    merged = engine_logps(None)
    return {"device": device, "model": model_dir, "rank": rank, "batch": batch, "tokens": tokens, "graphs": graphs,
            "adapter_mib": sum(f.stat().st_size for f in adapter_dir.iterdir()) / 2**20,
            "save_adapter_s": save_s, "merge_and_push_s": merge_push_s,
            "generate_base_s": gen_base_s, "generate_lora_s": gen_lora_s,
            "generate_lora_with_reload_s": gen_lora_reload_s,
            "max_logprob_gap_adapter_vs_trainer": max_gap(with_adapter, trainer),
            "max_logprob_gap_merged_vs_trainer": max_gap(merged, trainer)}


def write(r: dict, out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**r, "command": command}, indent=1))
    lines = [f"# LoRA-only weight sync into TRL's colocate vLLM engine: a probe ({r['device']})", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M')}, 1-minute load "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs).", "",
             f"Model `{r['model']}`, LoRA r={r['rank']} on all linear layers, {r['batch']} sequences x "
             f"{r['tokens']} tokens, {'CUDA graphs' if r.get('graphs') else 'eager'}, medians.", "",
             "| what | seconds |", "|---|---|",
             f"| TRL today: merge + push every tensor + unmerge + reset cache | {r['merge_and_push_s']:.4f} |",
             f"| LoRA only: write the adapter ({r['adapter_mib']:.2f} MiB) to memory-backed storage | "
             f"{r['save_adapter_s']:.4f} |",
             f"| generate, merged weights (no LoRA request) | {r['generate_base_s']:.4f} |",
             f"| generate with the adapter, reloaded in place each call (load_inplace=True) | "
             f"{r['generate_lora_with_reload_s']:.4f} |",
             f"| generate with the adapter already loaded | {r['generate_lora_s']:.4f} |", "",
             "Largest gap between the trainer's (PEFT, unmerged) log-probs and the engine's on the same tokens: "
             f"with the adapter {r['max_logprob_gap_adapter_vs_trainer']:.4f} nats, with merged bf16 weights "
             f"{r['max_logprob_gap_merged_vs_trainer']:.4f} nats.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model folder (default: r1exp's tiny model, built if needed)")
    parser.add_argument("--overrides", default="", help="r1exp overrides naming the model to build and use instead, "
                        "e.g. 'model=qwen0_5b model.init=random'")
    parser.add_argument("--graphs", action="store_true", help="CUDA graphs (enforce_eager=False) on a GPU")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/cpu/lora_sync_probe")
    a = parser.parse_args(argv)
    from r1exp.patches.vllm_cpu_linear import prepare_threads

    prepare_threads()   # as r1exp's runs do, before torch is imported (OpenMP's wait policy on a shared CPU)
    model = a.model
    if model is None:
        from r1exp.config.compose import compose
        from r1exp.models.source import model_source

        model = model_source(compose(shlex.split(a.overrides)), log=lambda *_: None)
    command = "python " + " ".join(shlex.quote(x) for x in ["bench/lora_sync_probe.py", *(argv or sys.argv[1:])])
    result = probe(model, a.rank, a.batch, a.tokens, a.repeats, a.graphs)
    out = Path(a.out) if Path(a.out).is_absolute() else ROOT / a.out
    write(result, out, command)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
