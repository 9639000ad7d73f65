"""Plausibility: settings that run but are unlikely to be what was meant, as warnings (never errors) with why and
fix. The ranges come from the anchors conf/preset/*.yaml cites, for GRPO with LoRA adapters (r1exp always trains
LoRA):

- TRL's GRPO docs and GRPOConfig: learning_rate 1e-6 (a full fine-tuning rate), num_generations 8,
  max_completion_length 256, temperature 1.0, beta 0.0 (DeepSeek-R1 used 0.001; TRL < 0.19 defaulted to 0.04).
- open-r1's recipes (recipes/Qwen2.5-1.5B-Instruct/grpo/config_demo.yaml): full fine-tuning at 1e-6 to 2e-5, 7-16
  generations, 1024-token completions.
- Unsloth's GRPO notebooks (Qwen2.5-3B, Qwen3-4B, Llama-3.1-8B; LoRA r=32): learning rate 5e-6, 4-8 generations,
  completions of max_seq_length - max_prompt_length (hundreds of tokens), temperature 1.0.

Models below REAL_MODEL_PARAMS (the ~0.6M-parameter demo, toy shapes) have no anchors: their learning rate and
completion length are not judged. TRL's own warnings about value combinations (read from its source,
r1exp.grpo.source) are repeated here before anything is loaded.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from r1exp.config.rule import Rule, get, is_number
from r1exp.errors import Problem

REAL_MODEL_PARAMS = 1e8          # below: a demo or toy shape, with no anchor to compare with
# The usual LoRA GRPO learning rates: from TRL's 1e-6 (a full fine-tuning default) to open-r1's 2e-5 (full
# fine-tuning) and about ten times that for LoRA at small sizes. "Far outside" is beyond these bounds.
LR_FLOOR = 1e-7                  # 10x below TRL's default: a LoRA adapter barely moves
LR_CEILING = ((1e9, 2e-4), (0.0, 5e-4))   # (from this many parameters, the rate above which to warn)
REASONING_MIN_TOKENS = 128       # a <think> block plus an answer; TRL's default is 256, open-r1 uses 1024
MIN_GENERATIONS = 4              # TRL 8, open-r1 7-16, Unsloth 4-8
MAX_BETA = 0.1                   # TRL 0.0, DeepSeek-R1 0.001, TRL < 0.19 0.04
MIN_TEMPERATURE = 0.5            # TRL, open-r1 and Unsloth sample at 1.0 (0.7 in some open-r1 recipes)
MAX_TEMPERATURE = 2.0            # above this, sampling is close to uniform (Unsloth refuses >= 10)


def _params(cfg) -> float | None:
    params = get(cfg, "model.arch.params")
    return float(params) if is_number(params) else None


def _size(params: float) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def learning_rate(ctx):
    lr, params = get(ctx.cfg, "trainer.learning_rate"), _params(ctx.cfg)
    if not is_number(lr) or lr <= 0 or params is None or params < REAL_MODEL_PARAMS:
        return
    ceiling = next(rate for size, rate in LR_CEILING if params >= size)
    if lr > ceiling:
        yield Problem("trainer.learning_rate", lr,
                      f"far above the usual LoRA GRPO rates for a {_size(params)}-parameter model (Unsloth's GRPO "
                      f"notebooks: 5e-6; open-r1: 1e-6 to 2e-5 for full fine-tuning; warning above {ceiling:g}): "
                      "the policy collapses or the rewards swing", "use trainer.learning_rate=5e-6 to 2e-5 "
                      "(conf/preset/ has the anchors' value for each shipped model)", severity="warning")
    elif lr < LR_FLOOR:
        yield Problem("trainer.learning_rate", lr,
                      f"far below the usual LoRA GRPO rates (TRL's default 1e-6 is a full fine-tuning rate; LoRA "
                      f"needs more): the adapter will hardly move in {get(ctx.cfg, 'trainer.max_steps')} steps",
                      "use trainer.learning_rate=5e-6 to 2e-5", severity="warning")


def _reasoning_rewards(cfg) -> list[str]:
    from r1exp.rewards.library import SPECS

    reward = OmegaConf.select(cfg, "reward", default=None)
    if not OmegaConf.is_dict(reward):
        return []
    return [str(label) for label, entry in reward.items() if OmegaConf.is_dict(entry) and not entry.get("_target_")
            and getattr(SPECS.get(entry.get("name")), "reasoning", False)]


def completion_budget(ctx):
    completion, params = get(ctx.cfg, "trainer.max_completion_length"), _params(ctx.cfg)
    if not (isinstance(completion, int) and not isinstance(completion, bool)) or params is None \
            or params < REAL_MODEL_PARAMS or completion >= REASONING_MIN_TOKENS:
        return
    asking = _reasoning_rewards(ctx.cfg)
    if asking:
        yield Problem("trainer.max_completion_length", completion,
                      f"the rewards {', '.join(asking)} ask for written reasoning (<think>...</think><answer>"
                      f"...</answer>), which does not fit in {completion} tokens: completions are cut before the "
                      "answer and score 0 (TRL's default is 256, open-r1 uses 1024)",
                      f"set trainer.max_completion_length>={REASONING_MIN_TOKENS * 2} (and model.max_seq_length / "
                      "engine.max_model_len to hold prompt + completion)", severity="warning")


def num_generations(ctx):
    gens = get(ctx.cfg, "trainer.num_generations")
    if isinstance(gens, int) and not isinstance(gens, bool) and 2 <= gens < MIN_GENERATIONS:
        yield Problem("trainer.num_generations", gens,
                      f"GRPO's advantage is a completion's reward against the mean of its group: with {gens} "
                      "completions per prompt the baseline is noisy and most groups have no spread (TRL's default "
                      "is 8, open-r1 uses 7-16, Unsloth's notebooks 4-8)",
                      f"set trainer.num_generations>={MIN_GENERATIONS} (8 is common), with a batch that is a "
                      "multiple of it", severity="warning")


def beta(ctx):
    value = get(ctx.cfg, "trainer.beta")
    if is_number(value) and value > MAX_BETA:
        yield Problem("trainer.beta", value,
                      "a KL coefficient this large pins the policy to the reference model, so the rewards barely "
                      "move it (TRL's default 0.0, DeepSeek-R1 0.001, TRL < 0.19 0.04)",
                      "use trainer.beta=0.0 (no reference model, less memory) or 0.001-0.04", severity="warning")


def temperature(ctx):
    value = get(ctx.cfg, "trainer.temperature")
    if is_number(value) and value > MAX_TEMPERATURE:
        yield Problem("trainer.temperature", value,
                      "sampling this hot is close to uniform over the vocabulary: completions are noise, rewards "
                      "near zero, and vLLM's and the trainer's log-probs of them disagree (TRL, open-r1 and Unsloth "
                      "sample at 0.7-1.0; Unsloth refuses 10 and above)", "use trainer.temperature=1.0 (TRL's "
                      "default)", severity="warning")
    if is_number(value) and 0 < value < MIN_TEMPERATURE:
        yield Problem("trainer.temperature", value,
                      "sampling this cold makes a prompt's completions nearly identical: equal rewards in a group "
                      "give zero advantage and no learning signal (TRL, open-r1 and Unsloth sample at 0.7-1.0)",
                      "use trainer.temperature=1.0 (TRL's default)", severity="warning")


def trl_warnings(ctx):
    """TRL's own warnings about value combinations (loss_type with importance_sampling_level, ...), read from the
    installed TRL's source: said now instead of in the middle of the build."""
    from r1exp.checks.trainer import trl_conditions

    yield from trl_conditions(ctx, "warning")


RULES: list[Rule] = [
    Rule("plausible.learning_rate", ("trainer.learning_rate", "model.arch.params"), learning_rate,
         doc="a learning rate far outside the usual LoRA GRPO range for the model's size (warning)"),
    Rule("plausible.completion_budget", ("trainer.max_completion_length", "reward.*", "model.arch.params"),
         completion_budget, doc="room to reason when the rewards ask for a <think> format (warning)"),
    Rule("plausible.num_generations", ("trainer.num_generations",), num_generations,
         doc="at least 4 completions per prompt for a useful group baseline (warning)"),
    Rule("plausible.beta", ("trainer.beta",), beta, doc="a KL coefficient that does not freeze the policy (warning)"),
    Rule("plausible.temperature", ("trainer.temperature",), temperature,
         doc="sampling warm enough for the completions of a group to differ (warning)"),
    Rule("plausible.trl_warnings", ("trainer.*",), trl_warnings,
         doc="TRL's own warnings about value combinations, read from the installed TRL (warning)"),
]
