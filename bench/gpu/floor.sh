#!/usr/bin/env bash
# bench/gpu_floor.py on the H200, one device call per CALL (each stays under the 10-minute limit of a call):
#   VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 bash bench/gpu/floor.sh CALL [CALL ...]
# CALL: q05 (0.5B: peft + unsloth, 64 completions x 256 tokens), q7 (7B peft, 64 x 256, gradient checkpointing),
#       q15 (1.5B peft, 32 x 512). All with CUDA graphs (engine.enforce_eager=false), LoRA r=16, random weights.
#       lora_q05 / lora_q7: bench/lora_sync_probe.py at that shape (LoRA-only sync vs TRL's merge + push, and the
#       engine's generation with and without a LoRA adapter, CUDA graphs), ~2-4 minutes.
# Each leaves $OUT/floor_CALL.tgz (floor.json, floor.md, runs/*/{run.json,metrics.jsonl,log_tail.txt}). The committed
# floors (bench/results/gpu/ratios.md, "r1exp's step / its floor") are measured in the side-by-side calls of
# bench/gpu/side_by_side.sh (bench/variants.py --floor-after, the same measurement); a floor from here that replaces
# one goes in as its claim's result (docs/benchmarks.md). A measurement that would start after BUDGET seconds is
# skipped and listed as skipped in floor.md.
set -u
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-540}
export R1EXP_CACHE=${R1EXP_CACHE:-/tmp/r1cache}
mkdir -p "$OUT"
COMMON="trainer.learning_rate=1e-5 engine.enforce_eager=false"
declare -A SHAPE=(
  [q05]="q05=model=qwen0_5b model.init=random trainer.per_device_train_batch_size=64 trainer.num_generations=8 trainer.max_completion_length=256 trainer.gradient_accumulation_steps=1"
  [q7]="q7=model=qwen7b model.init=random trainer.per_device_train_batch_size=64 trainer.num_generations=8 trainer.max_completion_length=256 trainer.gradient_checkpointing=true trainer.gradient_accumulation_steps=1"
  [q15]="q15=model=qwen1_5b model.init=random trainer.per_device_train_batch_size=32 trainer.num_generations=8 trainer.max_completion_length=512 trainer.gradient_accumulation_steps=1"
)
declare -A LOADERS=([q05]="peft,unsloth" [q7]="peft" [q15]="peft")
declare -A STEPS=([q05]=5 [q7]=3 [q15]=4)
for call in "$@"; do
  case $call in lora_q05|lora_q7)
    shape=${call#lora_}; model=$(echo "${SHAPE[$shape]}" | cut -d= -f2- | grep -o 'model=[^ ]* model.init=random')
    timeout -k 10 "$BUDGET" python bench/lora_sync_probe.py --overrides "$model" --batch 64 --tokens 256 --graphs \
      --out "$OUT/lora_probe_$shape"
    echo "lora probe $shape exit=$?"; cat "$OUT/lora_probe_$shape.md" 2>/dev/null; continue;;
  esac
  out=/tmp/floor_$call
  rm -rf "$out"
  python bench/gpu_floor.py --shape "${SHAPE[$call]}" --loaders "${LOADERS[$call]}" --steps "${STEPS[$call]}" \
    --repeats 3 --set $COMMON --budget "$BUDGET" --out "$out" --work "/tmp/floor_work_$call"
  echo "floor $call exit=$?"
  cat "$out/floor.md"
  tar czf "$OUT/floor_$call.tgz" -C "$out" .
done
ls -la "$OUT"
