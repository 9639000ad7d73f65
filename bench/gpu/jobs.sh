#!/usr/bin/env bash
# Run named r1exp jobs on the GPU machine and pack what each left (run.json, metrics.jsonl, config, log tail)
# into $OUT/results.tgz (the device returns at most 8 files). Usage, after bash scripts/install_gpu.sh [--from DIR]:
#   VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 bash bench/gpu/jobs.sh JOB [JOB ...]
# JOB names are the keys of JOBS below; each runs `python -m r1exp` with the shared and the job's overrides. A job's
# result is the run folder of the same name under bench/results/gpu/ (docs/benchmarks.md): trim it there with
# `python bench/gpu/keep.py /tmp/r1runs/JOB bench/results/gpu/<claim>/JOB`. The memory plan's fit runs
# (bench/results/gpu/memory_plan/fit/) were made with this script's first version and an earlier r1exp; their
# run.json holds the config each ran.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/r1runs
export R1EXP_CACHE=${R1EXP_CACHE:-/tmp/r1cache}
LIMIT=${LIMIT:-420}
# 0.5B shape, 64 completions x 256 tokens per step (8 prompts x 8 generations), a few steps.
Q05="model=qwen0_5b model.init=random trainer.per_device_train_batch_size=64 trainer.gradient_accumulation_steps=1 trainer.num_generations=8 trainer.max_completion_length=256 trainer.max_steps=4 trainer.learning_rate=1e-5 checks.reward_sanity=true"
Q7="model=qwen7b model.init=random trainer.per_device_train_batch_size=64 trainer.gradient_accumulation_steps=1 trainer.num_generations=8 trainer.max_completion_length=256 trainer.max_steps=3 trainer.learning_rate=1e-5 trainer.gradient_checkpointing=true"
# Llama-3-8B shape: a 131072-token context, far longer than the run needs (the engine must get the planned length).
L8="model=llama3_8b model.init=random trainer.per_device_train_batch_size=32 trainer.gradient_accumulation_steps=1 trainer.num_generations=8 trainer.max_completion_length=512 trainer.max_steps=2"
# An Unsloth notebook's engine at the real shape (random weights), with the memory vLLM had on the notebook's GPU:
# the same GiB as a fraction of this GPU (bench/results/gpu/published_memory/; bench/published_memory.yaml).
TOTAL_GIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | awk '{print $1/1024}')
fraction() { python -c "print(round($1 / ${TOTAL_GIB:-139.8}, 4))"; }
CONFIGS=tests/fixtures/model_configs
NB_LLAMA32="model.name_or_path=$CONFIGS/meta-llama__Llama-3.2-3B-Instruct model.init=random loader=unsloth engine=vllm model.lora.r=64 model.lora.alpha=64 loader.max_lora_rank=64 trainer.num_generations=4 trainer.per_device_train_batch_size=4 trainer.gradient_accumulation_steps=1 trainer.max_completion_length=1760 ++data.max_prompt_tokens=288 trainer.max_steps=2 engine.gpu_memory_utilization=$(fraction 31.28)"
NB_QWEN3="model.name_or_path=$CONFIGS/Qwen__Qwen3-4B-Base model.init=random loader=unsloth engine=vllm model.lora.r=32 model.lora.alpha=32 loader.max_lora_rank=32 trainer.num_generations=4 trainer.per_device_train_batch_size=4 trainer.gradient_accumulation_steps=1 trainer.max_completion_length=1846 ++data.max_prompt_tokens=202 trainer.max_steps=2 engine.gpu_memory_utilization=$(fraction 10.22)"
# Tools (bench/results/gpu/tools/): TRL's tool loop with in-process vLLM. The chat template is TRL's copy of
# Qwen2.5's (the one TRL parses tool calls of); both runs of a pair use it, so they differ by the tools alone.
QWEN_TEMPLATE=$(python -c "import os, trl; print(os.path.join(os.path.dirname(trl.__file__), 'chat_templates', 'qwen2_5.jinja'))" 2>/dev/null)
TOOLS05="$Q05 loader=peft engine=vllm model.chat_template=$QWEN_TEMPLATE trainer.max_steps=8 ++trainer.max_tool_calling_iterations=2 eval=none"
declare -A JOBS=(
  # one tool run at the 0.5B shape beside the same run without tools (random weights: few calls parse)
  [tools_0.5b]="$TOOLS05 tools=[calculator]"
  [no_tools_0.5b]="$TOOLS05"
  [tools_0.5b_unsloth]="$TOOLS05 loader=unsloth tools=[calculator]"
  # the CPU demo on the GPU: the tiny model learning to call the calculator, with vLLM on CUDA
  [tool_use_demo]="experiment=tool_use"
  # published settings measured (bench/results/gpu/published_memory/): Unsloth notebooks' engines at their GiB
  [nb_llama32_3b]="$NB_LLAMA32"
  [nb_qwen3_4b]="$NB_QWEN3"
  # the deterministic mode (bench/results/gpu/reproducible/)
  [deterministic_1]="$Q05 loader=peft engine=vllm reproducible=true trainer.max_steps=20"
  [deterministic_2]="$Q05 loader=peft engine=vllm reproducible=true trainer.max_steps=20"
  [normal_1]="$Q05 loader=peft engine=vllm trainer.max_steps=20"
  [normal_2]="$Q05 loader=peft engine=vllm trainer.max_steps=20"
  [normal_lr_x10]="$Q05 loader=peft engine=vllm trainer.max_steps=20 trainer.learning_rate=1e-4"
  # the planned length reaches the engine (bench/results/gpu/engine_length/)
  [llama3_8b]="$L8 loader=peft engine=vllm"
  # Unsloth under torch.compile, as r1exp runs it today (bench/results/gpu/unsloth_compile/no_env_vars)
  [no_env_vars]="$Q05 loader=unsloth engine=vllm"
  # Several GPUs (a machine of kind nvidia-h200-x2/x4/x8; README "Scaling out"). Not run yet: no such machine lent.
  [ddp2_peft_vllm]="$Q05 loader=peft engine=vllm distributed=ddp distributed.num_processes=2"
  [ddp4_peft_vllm]="$Q05 loader=peft engine=vllm distributed=ddp distributed.num_processes=4"
  [ddp8_q7_peft_vllm]="$Q7 loader=peft engine=vllm distributed=ddp distributed.num_processes=8"
  [fsdp8_q7_peft_hf]="$Q7 loader=peft engine=hf distributed=fsdp distributed.num_processes=8"
  [zero3_8_q7_peft_hf]="$Q7 loader=peft engine=hf distributed=deepspeed_zero3 distributed.num_processes=8"
  [server_ddp3_peft]="$Q05 loader=peft engine=vllm_server engine.launch=true engine.gpus=[3] distributed=ddp distributed.num_processes=3"
  [tp2_ddp4_q7_peft_vllm]="$Q7 loader=peft engine=vllm engine.tensor_parallel_size=2 distributed=ddp distributed.num_processes=4"
)
for job in "$@"; do
  dir=/tmp/r1runs/$job
  rm -rf "$dir"
  start=$(date +%s)
  echo "=== $job: python -m r1exp ${JOBS[$job]} ${EXTRA:-}"
  timeout -k 10 "$LIMIT" python -m r1exp ${JOBS[$job]} ${EXTRA:-} name=$job hydra.run.dir=$dir > /tmp/r1runs/$job.log 2>&1
  code=$?
  echo "$job exit=$code wall_s=$(( $(date +%s) - start ))" | tee -a "$OUT/summary.txt"
  mkdir -p "$dir"; tail -c 20000 /tmp/r1runs/$job.log > "$dir/log_tail.txt"; echo "$code" > "$dir/exit_code"
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv >> "$dir/log_tail.txt" 2>/dev/null
  python - "$dir" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); m = d / "run.json"
if m.exists():
    j = json.loads(m.read_text()); met = j.get("metrics", {})
    steps = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()] if (d / "metrics.jsonl").exists() else []
    times = [r.get("step_time") for r in steps if "step_time" in r]
    phases = {k: round(v, 3) for k, v in met.items() if k.startswith("time/")}
    print(" ", j["status"], "| step_time", [round(t, 2) for t in times], "| gpu", j.get("gpu_memory"),
          "| plan_total_gb", round(j.get("plan", {}).get("total_gb", 0), 2), "| util", j.get("plan", {}).get("gpu_memory_utilization"),
          "| phases", phases, "| startup", j.get("startup"), "| error", j.get("error"))
else:
    print("  (no run.json: stopped before the run started)")
PY
done
tar czf "$OUT/results.tgz" -C /tmp/r1runs --exclude='adapter' --exclude='trainer' --exclude='wandb' . 2>/dev/null
ls -la "$OUT"
