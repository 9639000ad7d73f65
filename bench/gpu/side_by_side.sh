#!/usr/bin/env bash
# bench/variants.py on one H200: settings side by side, one device call per CASE (each under the 10-minute limit):
#   VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 BUDGET=<s> bash bench/gpu/side_by_side.sh CASE
# CASE is the folder under bench/results/gpu/ its result replaces (docs/benchmarks.md: the claim it supports, and the
# BUDGET it ran with). Runs of one case run back to back in the order given; a case that names a fresh machine must
# be the machine's first call after its install.
#   engine_defaults/graphs_compile_batches  0.5B peft + vllm, 64 completions x 256 tokens: CUDA graphs with vLLM's
#             compile / graphs without compile / eager / sleep mode / 4 steps per generation; then vLLM alone with
#             TRL's engine arguments, max_num_batched_tokens 16384, and max_num_seqs 512 at 1, 2, 4 and 8 times the
#             step's 64 sequences.
#   engine_defaults/sleep_0.5b   0.5B: sleep mode / 4 steps per generation / graphs without compile (awake).
#   engine_defaults/sleep_7b     7B, 64 x 256, gradient checkpointing: peft awake / unsloth / peft with sleep mode.
#   engine_defaults/shipped      the shipped engine defaults as they are (no engine override): 0.5B peft, 0.5B
#             unsloth, 7B peft.
#   unsloth_logits/7b            7B 64 x 256: Unsloth with its loss's logits recomputed (loader.recompute_logits,
#             the default) / held (Unsloth's own behaviour) / peft with sleep mode / peft awake.
#   unsloth_logits/0.5b          0.5B: Unsloth recomputing / holding its logits, peft; then one Unsloth run of one
#             step under cProfile (profile/top.txt: where an Unsloth run's start goes, bench/results/gpu/bytecode).
#   unsloth_logits/0.5b_and_1.5b Unsloth: 1.5B 32 x 512 (logits recomputed), then 0.5B held / recomputed.
#   unsloth_memory/peaks_7b      7B: Unsloth with the engine's explicit KV cache (engine.gpu_memory_utilization=auto,
#             the default) / with a memory fraction of 0.15 / peft with sleep mode / peft awake.
#   unsloth_memory/savers_7b     0.5B Unsloth, peft awake, peft; 7B Unsloth with loader.standby=true, with
#             loader.load_in_4bit=true.
#   step_floor/unsloth_7b        7B: peft, Unsloth, then the floor of the peft run.
#   logprob_reuse/trl_7b         7B: peft with pi_old from the loss's forward (loader.reuse_training_logps, the
#             default) / with TRL's extra log-prob pass / the first again, then the floor of the first.
#   logprob_reuse/trl_0.5b       0.5B: Unsloth, then peft reusing / with TRL's pass, twice, interleaved.
#   logprob_reuse/unsloth_7b     7B: Unsloth with its no-grad log-prob pass (reuse_training_logps=false) / reusing /
#             peft, back to back.
#   logprob_reuse/unsloth_0.5b   0.5B: Unsloth reusing / with its pass / reusing again, then peft and its floor; keeps
#             Unsloth's generated trainer (generated_trainer.py; tests/fixtures/unsloth_grpo_trainer.py is its
#             excerpt).
#   vllm_text/0.5b               0.5B: Unsloth, then peft without vLLM's text (engine.detokenize=auto, the default) /
#             with it (engine.detokenize=true) / without again, then the floor of the last (with vLLM alone with and
#             without the text, interleaved in one engine).
#   vllm_text/0.5b_and_7b        0.5B Unsloth with vLLM's text / without, peft without / with; 7B Unsloth and peft.
#   unsloth_trainer_args/pinned  a fresh machine: 0.5B Unsloth, then 7B Unsloth, with TRL's trainer defaults pinned
#             (r1exp/grpo/args.py), then 0.5B peft.
#   vllm_vs_hf                   7B at 16 completions x 512 tokens with vllm and with hf; 1.5B 32 x 512 peft and
#             Unsloth, then the floor of the peft run.
#   batched_token_cap            a fresh machine: 0.5B Unsloth at 16 x 64 (before the cap, Unsloth's engine died in
#             vLLM's warm-up at this shape), then 0.5B peft and Unsloth twice, interleaved.
#   startup/fresh_machine_cold   a fresh machine (its install call): what it has (uptime, memory, the GPU's
#             persistence mode), then its first run, 0.5B Unsloth with every kernel cache empty (an empty
#             hardware.kernel_cache) and loader.trl_trainers=all, then 0.5B peft, both under the stack sampler.
#             Leaves $OUT/kernels_fresh_machine_cold.tgz, the kernel-cache folder its runs filled (3 MiB, for
#             startup/fresh_machine_carried_cache; not committed).
#   startup/same_machine_later   the same machine: 0.5B Unsloth (trl_trainers=all) with the caches filled; the same
#             with the packages' native libraries evicted from the page cache first (bench/page_cache.py --evict);
#             then trl_trainers=all / grpo back to back.
#   startup/fresh_machine_carried_cache  a second fresh machine (its install call) given the first one's kernel
#             caches (KERNELS=<folder holding kernels_fresh_machine_cold.tgz>): its first run, 0.5B Unsloth with the
#             defaults, then peft, Unsloth with trl_trainers=all, Unsloth, peft.
#   startup/generated_trainer    planned, not run yet: 0.5B Unsloth with trl_trainers=grpo / all, twice each, keeping
#             the generated UnslothGRPOTrainer.py of every run and their checksums ($OUT/generated_trainer/
#             generated.txt: the same file either way?).
# The commands below are the ones the committed results ran, less keys r1exp has since dropped (gc_freeze,
# hardware.prefetch_libraries; variants.json keeps the command as run).
# Leaves $OUT/<case with / as _>/ trimmed by bench/gpu/keep.py (variants.json/.md, the runs' files its claims read):
# copy it over bench/results/gpu/<CASE>/, then run `python bench/gpu/ratios.py` and
# `python bench/gpu/plan_vs_measured.py` and commit what changed. BUDGET (default 540 s): a run that would start
# later is skipped.
set -u
CASES="engine_defaults/graphs_compile_batches engine_defaults/sleep_0.5b engine_defaults/sleep_7b engine_defaults/shipped
unsloth_logits/7b unsloth_logits/0.5b unsloth_logits/0.5b_and_1.5b unsloth_memory/peaks_7b unsloth_memory/savers_7b
step_floor/unsloth_7b logprob_reuse/trl_7b logprob_reuse/trl_0.5b logprob_reuse/unsloth_7b logprob_reuse/unsloth_0.5b
vllm_text/0.5b vllm_text/0.5b_and_7b unsloth_trainer_args/pinned vllm_vs_hf batched_token_cap startup/fresh_machine_cold
startup/same_machine_later startup/fresh_machine_carried_cache startup/generated_trainer"
if [ $# -ne 1 ] || ! printf '%s\n' $CASES | grep -qx -- "$1"; then
  echo "usage: bash bench/gpu/side_by_side.sh CASE, one of:" $CASES; exit 2
fi
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-540}
export R1EXP_CACHE=${R1EXP_CACHE:-/tmp/r1cache}
mkdir -p "$OUT"
# Bytecode: the staging installs with `pip install --no-compile` and the image sets PYTHONDONTWRITEBYTECODE=1 with no
# bytecode for torch either, so no run would reuse bytecode (17 s of an Unsloth start compiling source,
# bench/results/gpu/bytecode). Compile the staged packages and the image's once per machine, as a normal pip install
# does, so start-up numbers are a normal install's (r1exp's machine.bytecode check warns where a run would pay it).
# BYTECODE=0 keeps the machine as staged.
if [ "${BYTECODE:-1}" = 1 ] && [ ! -e /tmp/.r1exp-bytecode ]; then
  t0=$(date +%s)
  for dir in /tmp/site $(python -c "import site; print(' '.join(site.getsitepackages()))"); do
    [ -d "$dir" ] && python -m compileall -q -j 0 "$dir" > /dev/null 2>&1
  done
  touch /tmp/.r1exp-bytecode && echo "bytecode: compiled the packages in $(( $(date +%s) - t0 )) s"
fi
Q05="model=qwen0_5b model.init=random loader=peft engine=vllm trainer.per_device_train_batch_size=64 trainer.num_generations=8 trainer.max_completion_length=256 trainer.gradient_accumulation_steps=1 trainer.learning_rate=1e-5"
Q7="model=qwen7b model.init=random loader=peft engine=vllm trainer.per_device_train_batch_size=64 trainer.num_generations=8 trainer.max_completion_length=256 trainer.gradient_accumulation_steps=1 trainer.gradient_checkpointing=true trainer.learning_rate=1e-5"
Q15="model=qwen1_5b model.init=random loader=peft engine=vllm trainer.per_device_train_batch_size=32 trainer.num_generations=8 trainer.max_completion_length=512 trainer.gradient_accumulation_steps=1 trainer.learning_rate=1e-5"
machine() { { date; uptime; free -g; nvidia-smi --query-gpu=name,persistence_mode,pstate,clocks.sm --format=csv; } \
  > "$out/machine.txt" 2>&1; }
case_=$1
name=${case_//\//_}
out=/tmp/sbs_$name
rm -rf "$out"
mkdir -p "$out"
KEEP=()   # bench/gpu/keep.py: what the committed result keeps of the call
case $case_ in
  engine_defaults/graphs_compile_batches)
    KEEP=(--runs graphs,no_compile,eager --folders "")
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "graphs=" --floor-after graphs --engine-arg max_num_batched_tokens=16384 \
      --engine-arg max_num_seqs=512 --batch-scales 1,2,4,8 --repeats 3 \
      --variant "no_compile=engine.compile=false" --variant "eager=engine.enforce_eager=true" \
      --variant "sleep=engine.sleep_mode=true" --variant "spg4=+trainer.steps_per_generation=4 trainer.max_steps=9" ;;
  engine_defaults/sleep_0.5b)
    KEEP=(--folders sleep)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "sleep=engine.sleep_mode=true" --variant "spg4=+trainer.steps_per_generation=4 trainer.max_steps=9" \
      --variant "graphs_nc=" ;;
  engine_defaults/sleep_7b)
    KEEP=(--runs vllm,sleep --folders "")
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "vllm=" --variant "unsloth=loader=unsloth" --variant "sleep=engine.sleep_mode=true" ;;
  engine_defaults/shipped)
    KEEP=(--runs q05_default,q7_default)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_default=" --variant "q05_unsloth=loader=unsloth" --variant "q7_default=$Q7 trainer.max_steps=4" ;;
  unsloth_logits/7b)
    KEEP=(--runs q7_unsloth,q7_unsloth_held)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth=loader=unsloth" --variant "q7_unsloth_held=loader=unsloth loader.recompute_logits=false" \
      --variant "q7_peft=" --variant "q7_peft_awake=engine.sleep_mode=false" ;;
  unsloth_logits/0.5b)
    KEEP=(--runs q05_unsloth,q05_unsloth_held --no-floor)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_unsloth_held=loader=unsloth loader.recompute_logits=false" \
      --variant "q05_peft=" --floor-after q05_peft --floor-last --repeats 2
    mkdir -p "$out/profile"
    ( cd "$out/profile" && timeout 200 python -m cProfile -o unsloth.prof -m r1exp $Q05 loader=unsloth \
        trainer.max_steps=1 logger=none hydra.run.dir="$out/profile/run" > log.txt 2>&1 ; echo "profile exit=$?" )
    python -c "import pstats, sys; s = pstats.Stats('$out/profile/unsloth.prof', stream=sys.stdout); s.sort_stats('cumulative').print_stats(80); s.sort_stats('tottime').print_stats(40)" > "$out/profile/top.txt" 2>&1
    mkdir -p "$OUT/bytecode" && cp "$out/profile/top.txt" "$OUT/bytecode/unsloth_start_profile.txt"
    tail -c 3000 "$out/profile/log.txt"; head -c 12000 "$out/profile/top.txt" ;;
  unsloth_logits/0.5b_and_1.5b)
    Q05S="model=qwen0_5b trainer.per_device_train_batch_size=64 trainer.max_completion_length=256 trainer.max_steps=6"
    python bench/variants.py --base "$Q15 loader=unsloth" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q15_unsloth=" --variant "q05_unsloth_held_2=$Q05S loader.recompute_logits=false" \
      --variant "q05_unsloth_2=$Q05S" ;;
  unsloth_memory/peaks_7b)
    KEEP=(--log "q7_unsloth=KV cache" --log "q7_unsloth_frac=KV cache")
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth=loader=unsloth" --variant "q7_unsloth_frac=loader=unsloth engine.gpu_memory_utilization=0.15" \
      --variant "q7_peft=" --variant "q7_peft_awake=engine.sleep_mode=false" ;;
  unsloth_memory/savers_7b)
    KEEP=(--runs q7_unsloth_standby,q7_unsloth_4bit)
    Q7U="$Q7 loader=unsloth trainer.max_steps=4"
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_3=loader=unsloth" --variant "q05_peft_awake=engine.sleep_mode=false" --variant "q05_peft_3=" \
      --variant "q7_unsloth_standby=$Q7U loader.standby=true" --variant "q7_unsloth_4bit=$Q7U loader.load_in_4bit=true" ;;
  step_floor/unsloth_7b)
    KEEP=(--runs q7_unsloth_2 --folders "")
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_peft_2=" --variant "q7_unsloth_2=loader=unsloth" --floor-after q7_peft_2 --floor-last --repeats 2 ;;
  logprob_reuse/trl_7b)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_peft=" --variant "q7_peft_pass=loader.reuse_training_logps=false" --variant "q7_peft_2=" \
      --floor-after q7_peft --floor-last --repeats 2 ;;
  logprob_reuse/trl_0.5b)
    KEEP=(--runs q05_peft_2,q05_peft_pass_2,q05_peft_3,q05_peft_pass_3 --no-floor --folders "")
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_2=loader=unsloth" --variant "q05_peft_2=" --variant "q05_peft_pass_2=loader.reuse_training_logps=false" \
      --variant "q05_peft_3=" --variant "q05_peft_pass_3=loader.reuse_training_logps=false" --floor-after q05_peft_2 --repeats 2 ;;
  logprob_reuse/unsloth_7b)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth_pass=loader=unsloth loader.reuse_training_logps=false" --variant "q7_unsloth=loader=unsloth" \
      --variant "q7_peft=" ;;
  logprob_reuse/unsloth_0.5b)
    KEEP=(--runs q05_unsloth,q05_unsloth_pass,q05_unsloth_2 --no-floor --folders "")
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_unsloth_pass=loader=unsloth loader.reuse_training_logps=false" \
      --variant "q05_unsloth_2=loader=unsloth" --variant "q05_peft=" --floor-after q05_peft --repeats 2; rc=$?
    cp unsloth_compiled_cache/UnslothGRPOTrainer.py "$OUT/generated_trainer.py" || echo "no generated trainer"
    (exit $rc) ;;
  vllm_text/0.5b)
    KEEP=(--folders q05_peft,q05_peft_text,q05_peft_2)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_peft=" \
      --variant "q05_peft_text=engine.detokenize=true" --variant "q05_peft_2=" \
      --floor-after q05_peft_2 --repeats 3 ;;
  vllm_text/0.5b_and_7b)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_text=loader=unsloth engine.detokenize=true" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_peft_unfrozen=" \
      --variant "q05_peft_text=engine.detokenize=true" \
      --variant "q7_unsloth=$Q7 loader=unsloth trainer.max_steps=4" --variant "q7_peft=$Q7 trainer.max_steps=4" ;;
  unsloth_trainer_args/pinned)
    KEEP=(--runs q05_unsloth,q7_unsloth)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q7_unsloth=$Q7 loader=unsloth trainer.max_steps=4" \
      --variant "q05_peft=" ;;
  vllm_vs_hf)
    KEEP=(--folders q7_16x512_vllm,q7_16x512_hf,q15_peft)
    Q7_16="$Q7 trainer.per_device_train_batch_size=16 trainer.max_completion_length=512"
    python bench/variants.py --base "$Q15" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_16x512_vllm=$Q7_16" --variant "q7_16x512_hf=$Q7_16 engine=hf trainer.max_steps=3" \
      --variant "q15_peft=" --variant "q15_unsloth=loader=unsloth" --floor-after q15_peft --floor-last --repeats 2 ;;
  batched_token_cap)
    KEEP=(--runs small_unsloth --no-floor --log "small_unsloth=max_num_batched_tokens")
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "small_unsloth=loader=unsloth trainer.per_device_train_batch_size=16 trainer.max_completion_length=64 trainer.max_steps=3" \
      --variant "q05_peft_1=" --variant "q05_unsloth_1=loader=unsloth" --variant "q05_peft_2=" \
      --variant "q05_unsloth_2=loader=unsloth" --floor-after q05_peft_1 --floor-last --repeats 2 ;;
  startup/fresh_machine_cold)
    KEEP=(--stacks q05_unsloth_first --folders q05_unsloth_first)
    machine
    python bench/variants.py --base "$Q05 hardware.kernel_cache=/tmp/kc" --steps 6 --budget "$BUDGET" --out "$out" \
      --sample-stacks q05_unsloth_first --sample-stacks q05_peft_first \
      --variant "q05_unsloth_first=loader=unsloth loader.trl_trainers=all" --variant "q05_peft_first="
    tar czf "$OUT/kernels_fresh_machine_cold.tgz" -C /tmp/kc . ;;
  startup/same_machine_later)
    KEEP=(--log q05_unsloth_all=DAPO --log q05_unsloth_grpo=DAPO --folders q05_unsloth_all,q05_unsloth_grpo)
    python bench/variants.py --base "$Q05 loader=unsloth hardware.kernel_cache=/tmp/kc" --steps 6 --budget "$BUDGET" \
      --out "$out" --evict-libraries q05_unsloth_evicted --sample-stacks q05_unsloth_evicted \
      --variant "q05_unsloth_warm=loader.trl_trainers=all" --variant "q05_unsloth_evicted=loader.trl_trainers=all" \
      --variant "q05_unsloth_all=loader.trl_trainers=all" --variant "q05_unsloth_grpo=loader.trl_trainers=grpo" ;;
  startup/fresh_machine_carried_cache)
    KEEP=(--stacks q05_unsloth_carried --log q05_unsloth_all=DAPO --log q05_unsloth_2=DAPO
          --folders q05_unsloth_carried,q05_unsloth_all,q05_unsloth_2)
    machine
    mkdir -p /tmp/kc && tar xzf "${KERNELS:-.gpu/kernels}/kernels_fresh_machine_cold.tgz" -C /tmp/kc
    python bench/variants.py --base "$Q05 hardware.kernel_cache=/tmp/kc" --steps 6 --budget "$BUDGET" --out "$out" \
      --sample-stacks q05_unsloth_carried --sample-stacks q05_peft_carried \
      --variant "q05_unsloth_carried=loader=unsloth" --variant "q05_peft_carried=" \
      --variant "q05_unsloth_all=loader=unsloth loader.trl_trainers=all" --variant "q05_unsloth_2=loader=unsloth" \
      --variant "q05_peft_2=" ;;
  startup/generated_trainer)
    mkdir -p "$OUT/generated_trainer"
    for arm in grpo_1 all_1 grpo_2 all_2; do
      rm -rf unsloth_compiled_cache
      python bench/variants.py --base "$Q05 loader=unsloth" --steps 4 --budget 140 --out "$out/$arm" \
        --variant "q05_unsloth_$arm=loader.trl_trainers=${arm%_*}"
      echo "$arm $(ls unsloth_compiled_cache | grep -c 'Trainer.py$') trainers $(md5sum < unsloth_compiled_cache/UnslothGRPOTrainer.py)" \
        | tee -a "$OUT/generated_trainer/generated.txt"
      cp unsloth_compiled_cache/UnslothGRPOTrainer.py "$OUT/generated_trainer/UnslothGRPOTrainer_$arm.py"
    done
    cat "$out"/*/variants.md > "$out/variants.md"
    echo "variants $case_ (planned case: compare the checksums; nothing to keep under bench/results)"; exit 0 ;;
esac
echo "variants $case_ exit=$?"
cat "$out/variants.md"
python bench/gpu/keep.py "$out" "$OUT/$name" ${KEEP[@]+"${KEEP[@]}"}
ls -la "$OUT"
