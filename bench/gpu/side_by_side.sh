#!/usr/bin/env bash
# bench/variants.py on the H200: settings side by side, one device call per CALL (each under the 10-minute limit):
#   source /tmp/gpu-env.sh && bash bench/gpu/side_by_side.sh CALL
# CALL:
#   defaults  0.5B peft + vllm, 64 completions x 256 tokens: the engine defaults (issue 12). CUDA graphs with vLLM's
#             compile (the default) / graphs without compile / eager / sleep mode / 4 steps per generation; then
#             vLLM alone with TRL's engine arguments, max_num_batched_tokens 16384, and max_num_seqs 512 at 1, 2, 4
#             and 8 times the step's 64 sequences.
#   q7        7B, 64 x 256, gradient checkpointing: peft + vllm / peft + hf / unsloth + vllm back to back, then
#             the floor of the vllm run (issue 13: vllm/hf per step, Unsloth/TRL peak memory).
#   q15       1.5B, 32 x 512: peft + vllm, then its floor.
#   q7b       7B as q7: peft + vllm / unsloth + vllm / peft + vllm with sleep mode, back to back (Unsloth/TRL peak).
#   unsloth   unsloth + vllm at the 0.5B and 1.5B shapes (their floors: the defaults and q15 calls).
#   final     the shipped engine defaults as they are (no engine override): 0.5B peft, 0.5B unsloth, 7B peft.
#   s5a       session 5, 0.5B: Unsloth with the engine's settings (one step's 64 sequences at once, graphs without
#             Inductor; the defaults) / peft / Unsloth with its Inductor compile; then the floor of the peft run.
#   s5b       session 5, 1.5B and 7B: Unsloth at 1.5B (32 x 512) and 7B, peft at 7B (TRL colocate, sleep mode)
#             (Unsloth/TRL peak at 7B).
#             The committed s5a/s5b also hold a `*_nocap` variant each (loader.logit_chunk_rows=null): that knob capped
#             the chunks of Unsloth's no-grad log-prob pass (UNSLOTH_GRPO_MAX_ROWS_PER_CHUNK), changed neither the
#             peak nor the step, and was removed after these calls; the runs are Unsloth's own chunking, i.e. the
#             defaults of today.
#   s5c       session 5, shapes the Unsloth memory terms were not fitted on: 3B 48 x 384, 0.5B 32 x 512 without
#             gradient checkpointing, 1.5B 4-bit.
#   s7a       planned for session 7, not run (its device time ran out): the batched-token cap on small shapes
#             (16 x 64 tokens: Unsloth's engine died there in session 5; TRL's engine at the same shape), then
#             7B Unsloth (its engine with the planned fraction) / peft with sleep mode (the default) / peft awake,
#             back to back (Unsloth/TRL peak at 7B); then the floor of the 7B peft run.
#   s7b       session 7: 7B at 16 completions x 512 tokens with vllm and with hf (vllm/hf per step where generation
#             dominates); 1.5B (32 x 512) peft and Unsloth, then the floor of the 1.5B peft run.
#   s7c       session 7: 0.5B Unsloth at 16 x 64 (the batched-token cap: Unsloth's engine died at this shape in
#             session 5; first on the machine, it also pays the machine's first compile), then 0.5B peft and Unsloth
#             at 64 x 256, each twice, interleaved, then the floor of the first peft run (step / floor of both, time
#             to first step on a machine that has run them before).
#   s8a       session 8, 7B 64 x 256 with gradient checkpointing, back to back: Unsloth with its loss's logits
#             recomputed (loader.recompute_logits, the default) / held (the session-5 behaviour) / peft with sleep
#             mode (the default) / peft awake (Unsloth/TRL peak at 7B, both TRL arms).
#   s8b       session 8, 0.5B 64 x 256: Unsloth recomputing / holding its logits, peft; then one Unsloth run of one
#             step under cProfile (where start to first step goes: $OUT/s8b_profile_*.txt); then the floor of
#             the peft run.
#   s8c       session 8, Unsloth: 1.5B 32 x 512 (its logits recomputed), then 0.5B 64 x 256 held / recomputed (a second
#             pair after s8b's).
#   s9a       session 9, 7B 64 x 256 with gradient checkpointing, back to back: Unsloth with the engine's explicit KV
#             cache (engine.gpu_memory_utilization=auto: one generation batch, the default since session 9) / Unsloth
#             with session 8's fraction (0.15: vLLM sized its KV cache from it) / peft with sleep mode (the default)
#             / peft awake (Unsloth/TRL peak at 7B, both TRL arms, all with the explicit KV cache).
#   s9b       session 9, 0.5B 64 x 256 on a machine whose packages have bytecode: Unsloth and peft twice each,
#             interleaved (start to first step), then the floor of the first peft run.
#   s9c       session 9, 7B 64 x 256: peft (sleep mode) and Unsloth, then the floor of the peft run (7B step / floor).
#   s9d       session 9: 0.5B Unsloth once more, peft awake / with sleep mode; 7B Unsloth with loader.standby=true
#             and with loader.load_in_4bit=true.
#   s9e       session 9: 0.5B peft and Unsloth, then the floor of the peft run.
#   s10a      session 10, 7B 64 x 256: peft with pi_old from the loss's forward (loader.reuse_training_logps, the
#             default since session 10) / peft with TRL's extra log-prob pass (reuse_training_logps=false) / the first
#             again, back to back; then the floor of the first run (7B step / floor, the pass's cost side by side).
#   s10b      session 10, 0.5B 64 x 256: Unsloth first on the machine (start to first step), peft reusing / with
#             TRL's pass; then the floor of the peft run.
#   s10c      session 10, 0.5B 64 x 256: Unsloth again (start on a machine that ran it), then peft reusing / with TRL's
#             pass twice, interleaved, the floor right after the first peft run.
#   s10d      session 10, 7B 64 x 256 on a fresh machine: Unsloth, then peft (pi_old reused), back to back (Unsloth
#             still runs its own no-grad log-prob pass: Unsloth step / PEFT step now that PEFT's is gone).
#   s11a      session 11, 0.5B 64 x 256 on a fresh machine: Unsloth with pi_old from the loss's forward
#             (loader.reuse_training_logps, the default since session 11) / with Unsloth's own no-grad pass / the
#             first again, then peft and its floor; keeps Unsloth's generated trainer
#             (unsloth_compiled_cache/UnslothGRPOTrainer.py, the code the reuse reads) as generated_trainer.py. As run,
#             the reuse was not in force (the check read the wrapper Unsloth puts around the method): all three Unsloth
#             runs ran Unsloth's pass, and the budget stopped peft and its floor.
#   s11b      session 11, 7B 64 x 256 on a fresh machine: Unsloth with its pass / reusing / peft, back to back (the
#             pass's cost side by side; Unsloth step / PEFT step).
#   s11c      session 11, 0.5B 64 x 256: Unsloth reusing / with its pass / reusing again, then peft and its floor.
#   s11d      session 11, 0.5B 64 x 256 on a fresh machine, Unsloth with TRL's trainer defaults (r1exp/grpo/args.py:
#             fused AdamW, no weight decay or warm-up, the importance-sampling correction on, truncated completions
#             kept): it trains (loss and gradient norm no longer 0) and reuses pi_old with the correction on.
#   s12a      session 12, 0.5B 64 x 256 on a fresh machine: Unsloth with the defaults (engine.detokenize=auto: vLLM
#             makes no text), then peft with the defaults / with vLLM's text (session 11's settings) / the defaults
#             again, and the floor after the last (vLLM alone with and without the text, interleaved in one engine).
#   s12b      session 12, the same machine: 0.5B Unsloth with vLLM's text / without, peft without / with vLLM's text,
#             then 7B Unsloth and peft. As run (variants.json has the commands), the peft and Unsloth runs with
#             session 11's settings and `q05_peft_unfrozen` also had `gc_freeze=false`: a key r1exp had during the
#             session (the built heap frozen before training, true by default), removed after these calls measured
#             it at 0.005-0.01 s of a step (session12/README.md); the cases below leave it out. In s12a/s12b
#             Unsloth's GRPOConfig was not pinned to TRL's defaults (it took TRL's name; fixed before s12c).
#   s12c      session 12, a fresh machine: 0.5B Unsloth, then 7B Unsloth, with TRL's trainer defaults pinned (s12a and
#             s12b pinned nothing: Unsloth gives its GRPOConfig TRL's module and name), then 0.5B peft.
#   s13a      session 13, a fresh machine: its first run (0.5B Unsloth, 2 steps) under cProfile with the kernel caches
#             listed before and after (where a cold start goes: profile/), then 0.5B Unsloth twice.
#   s13b      session 13, the same machine: 0.5B Unsloth and peft with every kernel cache empty (an empty
#             hardware.kernel_cache), then peft warm; packs the two empty-cache runs' folders as
#             $OUT/kernels_<loader>_cold.tgz (about 11 MiB; s13c carries them, they are not committed).
#             As run (variants.json has the commands), s13a and s13b also had an Unsloth run with
#             `engine.lora_free_graphs=true`, a key r1exp had during the session (false: vLLM's
#             cudagraph_specialize_lora off for Unsloth's engine, to skip the graphs without a LoRA). vLLM 0.26's model
#             runner V2 captures [0, max_loras + 1] active LoRAs either way: 22 graphs in both arms, graph capture
#             3.1-3.6 vs 3.4 s; the key was removed and the cases below leave that run out. The cold-kernel runs set
#             the five cache variables themselves, as hardware.kernel_cache now does.
#   s13c      session 13, a fresh machine given the kernel caches another H200 filled (s13b's empty-cache runs of 0.5B
#             Unsloth and peft, carried as KERNELS/kernels_<loader>_cold.tgz): 0.5B Unsloth with hardware.kernel_cache
#             at the carried folder, the machine's first run; 0.5B Unsloth with an empty kernel cache; peft with the
#             carried folder; then Unsloth and peft once more each (Unsloth step / PEFT step, interleaved).
#   s14a      session 14, a fresh machine (its install call): what it has (uptime, memory, the GPU's persistence
#             mode), then its first run, 0.5B Unsloth with the session-13 start (an empty hardware.kernel_cache,
#             loader.trl_trainers=all) under bench/sample_stacks.py, then peft the same way; every run records how
#             much of the packages' native libraries was in the page cache before and after it (bench/page_cache.py).
#             Packs the kernel-cache folder they filled as $OUT/kernels_s14a.tgz (3 MiB, for s14c, not committed).
#   s14b      session 14, the same machine: 0.5B Unsloth as in s14a with the caches filled; the same with the
#             libraries evicted from the page cache; then loader.trl_trainers=all / grpo back to back.
#             As run (variants.json has the commands), the runs also had `hardware.prefetch_libraries`, a key r1exp
#             had during the session (a thread reading every mapped shared library in full, for CUDA's lazy kernel
#             loading): false in s14a and in the first two s14b runs, true in the other three. With every library
#             evicted the start took 38.7 s against 38.1 s warm (warm-up 0.7 and 0.7 s, graph capture 2.1 and
#             2.0 s): a cold page cache costs this machine under a second, so the key was removed, and the cases
#             leave it and the run with the prefetch after the eviction out.
#   s14c      session 14, a second fresh machine given s14a's kernel caches (KERNELS/kernels_s14a.tgz): its first run,
#             0.5B Unsloth with the defaults (loader.trl_trainers=grpo) and the carried folder, then peft the same
#             way (both under bench/sample_stacks.py); then Unsloth with trl_trainers=all / grpo and peft again.
#   s14d      planned for session 14, not run (the machine was lost): 0.5B Unsloth with trl_trainers=grpo / all,
#             twice each, each after removing unsloth_compiled_cache/; keeps the generated UnslothGRPOTrainer.py of
#             every run and their checksums ($OUT/s14d/generated.txt: the same file either way?).
# Leaves $OUT/CALL.tgz (variants.json/.md, runs/*/{run.json,metrics.jsonl,log_tail.txt}); unpack it into
# bench/results/h200/<CALL>/ and commit. BUDGET (default 540 s): a run that would start later is skipped.
set -u
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-540}
export R1EXP_CACHE=${R1EXP_CACHE:-/tmp/r1cache}
mkdir -p "$OUT"
# Bytecode: the staging installs with `pip install --no-compile` and the image sets PYTHONDONTWRITEBYTECODE=1 with no
# bytecode for torch either, so no run reused bytecode (session 8: 17 s of an Unsloth start compiling source,
# bench/results/h200/session8/s8b/profile; bench/results/h200/session8/bytecode). Compile the staged packages and the
# image's once per machine, as a normal pip install does, so start-up numbers are a normal install's (r1exp's
# machine.bytecode check warns where a run would pay it). BYTECODE=0 keeps the machine as staged (sessions 4-8).
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
call=$1
out=/tmp/sbs_$call
rm -rf "$out"
case $call in
  defaults)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "graphs=" --floor-after graphs --engine-arg max_num_batched_tokens=16384 \
      --engine-arg max_num_seqs=512 --batch-scales 1,2,4,8 --repeats 3 \
      --variant "no_compile=engine.compile=false" --variant "eager=engine.enforce_eager=true" \
      --variant "sleep=engine.sleep_mode=true" --variant "spg4=+trainer.steps_per_generation=4 trainer.max_steps=9" ;;
  q7)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "vllm=" --variant "hf=engine=hf trainer.max_steps=3" --variant "unsloth=loader=unsloth" \
      --floor-after vllm --floor-last --repeats 2 ;;
  q15)
    python bench/variants.py --base "$Q15" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q15_peft=" --floor-after q15_peft --repeats 2 ;;
  q7b)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "vllm=" --variant "unsloth=loader=unsloth" --variant "sleep=engine.sleep_mode=true" ;;
  unsloth)
    python bench/variants.py --base "$Q05 loader=unsloth" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=" --variant "q15_unsloth=$Q15 loader=unsloth trainer.max_steps=4" ;;
  final)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_default=" --variant "q05_unsloth=loader=unsloth" --variant "q7_default=$Q7 trainer.max_steps=4" ;;
  s5a)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_peft=" \
      --variant "q05_unsloth_inductor=loader=unsloth engine.compile=true" \
      --floor-after q05_peft --floor-last --repeats 2 ;;
  s5b)
    python bench/variants.py --base "$Q7 loader=unsloth" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q15_unsloth=$Q15 loader=unsloth" --variant "q7_unsloth=" --variant "q7_peft=loader=peft" ;;
  s5c)
    python bench/variants.py --base "$Q05 loader=unsloth" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q3b_unsloth=model=qwen3b model.init=random trainer.per_device_train_batch_size=48 trainer.max_completion_length=384 trainer.gradient_checkpointing=true" \
      --variant "q05_nogc_unsloth=trainer.per_device_train_batch_size=32 trainer.max_completion_length=512 trainer.gradient_checkpointing=false" \
      --variant "q15_4bit_unsloth=model=qwen1_5b model.init=random loader.load_in_4bit=true" ;;
  s7a)
    SMALL="trainer.per_device_train_batch_size=16 trainer.max_completion_length=64"
    python bench/variants.py --base "$Q05" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "small_unsloth=loader=unsloth $SMALL" --variant "small_peft=$SMALL" \
      --variant "q7_unsloth=$Q7 loader=unsloth" --variant "q7_peft=$Q7" \
      --variant "q7_peft_awake=$Q7 engine.sleep_mode=false" --floor-after q7_peft --floor-last --repeats 2 ;;
  s7b)
    Q7_16="$Q7 trainer.per_device_train_batch_size=16 trainer.max_completion_length=512"
    python bench/variants.py --base "$Q15" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_16x512_vllm=$Q7_16" --variant "q7_16x512_hf=$Q7_16 engine=hf trainer.max_steps=3" \
      --variant "q15_peft=" --variant "q15_unsloth=loader=unsloth" --floor-after q15_peft --floor-last --repeats 2 ;;
  s7c)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "small_unsloth=loader=unsloth trainer.per_device_train_batch_size=16 trainer.max_completion_length=64 trainer.max_steps=3" \
      --variant "q05_peft_1=" --variant "q05_unsloth_1=loader=unsloth" --variant "q05_peft_2=" \
      --variant "q05_unsloth_2=loader=unsloth" --floor-after q05_peft_1 --floor-last --repeats 2 ;;
  s8a)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth=loader=unsloth" --variant "q7_unsloth_held=loader=unsloth loader.recompute_logits=false" \
      --variant "q7_peft=" --variant "q7_peft_awake=engine.sleep_mode=false" ;;
  s8b)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_unsloth_held=loader=unsloth loader.recompute_logits=false" \
      --variant "q05_peft=" --floor-after q05_peft --floor-last --repeats 2
    mkdir -p "$out/profile"
    ( cd "$out/profile" && timeout 200 python -m cProfile -o unsloth.prof -m r1exp $Q05 loader=unsloth \
        trainer.max_steps=1 logger=none hydra.run.dir="$out/profile/run" > log.txt 2>&1 ; echo "profile exit=$?" )
    python -c "import pstats, sys; s = pstats.Stats('$out/profile/unsloth.prof', stream=sys.stdout); s.sort_stats('cumulative').print_stats(80); s.sort_stats('tottime').print_stats(40)" > "$out/profile/top.txt" 2>&1
    tail -c 3000 "$out/profile/log.txt"; head -c 12000 "$out/profile/top.txt" ;;
  s8c)
    Q05S="model=qwen0_5b trainer.per_device_train_batch_size=64 trainer.max_completion_length=256 trainer.max_steps=6"
    python bench/variants.py --base "$Q15 loader=unsloth" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q15_unsloth=" --variant "q05_unsloth_held_2=$Q05S loader.recompute_logits=false" \
      --variant "q05_unsloth_2=$Q05S" ;;
  s9a)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth=loader=unsloth" --variant "q7_unsloth_frac=loader=unsloth engine.gpu_memory_utilization=0.15" \
      --variant "q7_peft=" --variant "q7_peft_awake=engine.sleep_mode=false" ;;
  s9b)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_1=loader=unsloth" --variant "q05_peft_1=" --variant "q05_unsloth_2=loader=unsloth" \
      --variant "q05_peft_2=" --floor-after q05_peft_1 --floor-last --repeats 2 ;;
  s9c)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_peft_2=" --variant "q7_unsloth_2=loader=unsloth" --floor-after q7_peft_2 --floor-last --repeats 2 ;;
  s9d)
    Q7U="$Q7 loader=unsloth trainer.max_steps=4"
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_3=loader=unsloth" --variant "q05_peft_awake=engine.sleep_mode=false" --variant "q05_peft_3=" \
      --variant "q7_unsloth_standby=$Q7U loader.standby=true" --variant "q7_unsloth_4bit=$Q7U loader.load_in_4bit=true" ;;
  s9e)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_peft_4=" --variant "q05_unsloth_4=loader=unsloth" --floor-after q05_peft_4 --floor-last --repeats 2 ;;
  s10a)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_peft=" --variant "q7_peft_pass=loader.reuse_training_logps=false" --variant "q7_peft_2=" \
      --floor-after q7_peft --floor-last --repeats 2 ;;
  s10b)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_peft=" --variant "q05_peft_pass=loader.reuse_training_logps=false" \
      --floor-after q05_peft --floor-last --repeats 2 ;;
  s10c)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_2=loader=unsloth" --variant "q05_peft_2=" --variant "q05_peft_pass_2=loader.reuse_training_logps=false" \
      --variant "q05_peft_3=" --variant "q05_peft_pass_3=loader.reuse_training_logps=false" --floor-after q05_peft_2 --repeats 2 ;;
  s10d)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth=loader=unsloth" --variant "q7_peft_3=" ;;
  s11a|s11c)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_unsloth_pass=loader=unsloth loader.reuse_training_logps=false" \
      --variant "q05_unsloth_2=loader=unsloth" --variant "q05_peft=" --floor-after q05_peft --repeats 2; rc=$?
    cp unsloth_compiled_cache/UnslothGRPOTrainer.py "$out/generated_trainer.py" || echo "no generated trainer"
    (exit $rc) ;;
  s12a)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_peft=" \
      --variant "q05_peft_s11=engine.detokenize=true" --variant "q05_peft_2=" \
      --floor-after q05_peft_2 --repeats 3 ;;
  s12b)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_s11=loader=unsloth engine.detokenize=true" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_peft_unfrozen=" \
      --variant "q05_peft_text=engine.detokenize=true" \
      --variant "q7_unsloth=$Q7 loader=unsloth trainer.max_steps=4" --variant "q7_peft=$Q7 trainer.max_steps=4" ;;
  s12c)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q7_unsloth=$Q7 loader=unsloth trainer.max_steps=4" \
      --variant "q05_peft=" ;;
  s13a)
    t0=$(date +%s)
    mkdir -p "$out/profile"
    python bench/kernel_caches.py --out "$out/profile/caches_before.json" > /dev/null
    ( cd "$out/profile" && timeout 280 python -m cProfile -o unsloth.prof -m r1exp $Q05 loader=unsloth \
        trainer.max_steps=2 logger=none hydra.run.dir="$out/profile/run" > log.txt 2>&1 ; echo "profile exit=$?" )
    python bench/kernel_caches.py --out "$out/profile/caches_after.json" > /dev/null
    python -c "import pstats, sys; s = pstats.Stats('$out/profile/unsloth.prof', stream=sys.stdout); s.sort_stats('cumulative').print_stats(100); s.print_stats('triton|flashinfer|inductor|lora|compile|subprocess', 60); s.sort_stats('tottime').print_stats(40)" > "$out/profile/top.txt" 2>&1
    gzip -f "$out/profile/unsloth.prof"; rm -rf "$out/profile/unsloth_compiled_cache"
    tail -c 1500 "$out/profile/log.txt"
    python bench/variants.py --base "$Q05" --steps 6 --budget "$((BUDGET - $(date +%s) + t0))" --out "$out" \
      --variant "q05_unsloth=loader=unsloth" --variant "q05_unsloth_2=loader=unsloth" ;;
  s13b)
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_cold=loader=unsloth" --variant "q05_peft_cold=" --variant "q05_peft=" \
      --cold-kernels q05_unsloth_cold --cold-kernels q05_peft_cold
    # what those two runs compiled, for s13c's fresh machine (carry them there in a folder named by KERNELS)
    for k in unsloth peft; do tar czf "$OUT/kernels_${k}_cold.tgz" -C "$out/work/q05_${k}_cold_kernel_caches" .; done ;;
  s13c)
    for k in unsloth peft; do mkdir -p /tmp/kc_$k && tar xzf "${KERNELS:-.gpu/kernels}/kernels_${k}_cold.tgz" -C /tmp/kc_$k; done
    python bench/variants.py --base "$Q05" --steps 6 --budget "$BUDGET" --out "$out" \
      --variant "q05_unsloth_carried=loader=unsloth hardware.kernel_cache=/tmp/kc_unsloth" \
      --variant "q05_unsloth_cold=loader=unsloth" --cold-kernels q05_unsloth_cold \
      --variant "q05_peft_carried=hardware.kernel_cache=/tmp/kc_peft" --variant "q05_unsloth_2=loader=unsloth" \
      --variant "q05_peft_2=" ;;
  s14a)
    { date; uptime; free -g; nvidia-smi --query-gpu=name,persistence_mode,pstate,clocks.sm --format=csv; } \
      > "$OUT/machine_s14a.txt" 2>&1
    python bench/variants.py --base "$Q05 hardware.kernel_cache=/tmp/kc" --steps 6 --budget "$BUDGET" --out "$out" \
      --sample-stacks q05_unsloth_first --sample-stacks q05_peft_first \
      --variant "q05_unsloth_first=loader=unsloth loader.trl_trainers=all" --variant "q05_peft_first="
    tar czf "$OUT/kernels_s14a.tgz" -C /tmp/kc . ;;
  s14b)
    python bench/variants.py --base "$Q05 loader=unsloth hardware.kernel_cache=/tmp/kc" --steps 6 --budget "$BUDGET" \
      --out "$out" --evict-libraries q05_unsloth_evicted --sample-stacks q05_unsloth_evicted \
      --variant "q05_unsloth_warm=loader.trl_trainers=all" --variant "q05_unsloth_evicted=loader.trl_trainers=all" \
      --variant "q05_unsloth_all=loader.trl_trainers=all" --variant "q05_unsloth_grpo=loader.trl_trainers=grpo" ;;
  s14c)
    { date; uptime; free -g; nvidia-smi --query-gpu=name,persistence_mode,pstate,clocks.sm --format=csv; } \
      > "$OUT/machine_s14c.txt" 2>&1
    mkdir -p /tmp/kc && tar xzf "${KERNELS:-.gpu/kernels}/kernels_s14a.tgz" -C /tmp/kc
    python bench/variants.py --base "$Q05 hardware.kernel_cache=/tmp/kc" --steps 6 --budget "$BUDGET" --out "$out" \
      --sample-stacks q05_unsloth_carried --sample-stacks q05_peft_carried \
      --variant "q05_unsloth_carried=loader=unsloth" --variant "q05_peft_carried=" \
      --variant "q05_unsloth_all=loader=unsloth loader.trl_trainers=all" --variant "q05_unsloth_2=loader=unsloth" \
      --variant "q05_peft_2=" ;;
  s14d)
    mkdir -p "$OUT/s14d"
    for arm in grpo_1 all_1 grpo_2 all_2; do
      rm -rf unsloth_compiled_cache
      python bench/variants.py --base "$Q05 loader=unsloth" --steps 4 --budget 140 --out "$out/$arm" \
        --variant "q05_unsloth_$arm=loader.trl_trainers=${arm%_*}"
      echo "$arm $(ls unsloth_compiled_cache | grep -c 'Trainer.py$') trainers $(md5sum < unsloth_compiled_cache/UnslothGRPOTrainer.py)" \
        | tee -a "$OUT/s14d/generated.txt"
      cp unsloth_compiled_cache/UnslothGRPOTrainer.py "$OUT/s14d/UnslothGRPOTrainer_$arm.py"
    done
    cat "$out"/*/variants.md > "$out/variants.md" ;;
  s11d)
    python bench/variants.py --base "$Q05" --steps 4 --budget "$BUDGET" --out "$out" --variant "q05_unsloth=loader=unsloth" ;;
  s11b)
    python bench/variants.py --base "$Q7" --steps 4 --budget "$BUDGET" --out "$out" \
      --variant "q7_unsloth_pass=loader=unsloth loader.reuse_training_logps=false" --variant "q7_unsloth=loader=unsloth" \
      --variant "q7_peft=" ;;
  *) echo "unknown call $call (defaults, q7, q15, q7b, unsloth, final, s5a, s5b, s5c, s7a, s7b, s7c, s8a, s8b, s8c, s9a-s9e, s10a-s10d, s11a-s11d, s12a-s12c, s13a-s13c, s14a-s14d)"; exit 2 ;;
esac
echo "variants $call exit=$?"
cat "$out/variants.md"
tar czf "$OUT/$call.tgz" -C "$out" --exclude=work .
ls -la "$OUT"
