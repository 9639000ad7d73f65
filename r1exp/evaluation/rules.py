"""The eval group's rows of the rules table: the held-out prompts exist, the reward that marks a completion correct
is one of the run's, the settings mean what they say, and the completions fit the engine."""

from __future__ import annotations

from r1exp.config.rule import Rule, get
from r1exp.errors import Problem
from r1exp.evaluation import heldout
from r1exp.evaluation.heldout import correctness_reward


def heldout_data(ctx):
    cfg = ctx.cfg
    if not heldout.enabled(cfg) or heldout.source_of(cfg) is not None:
        return
    yield Problem("eval.name", "heldout", f"data={get(cfg, 'data.name')} reads every record for training and names "
                  "no held-out split, so this run is not evaluated on prompts it did not train on (it reports its "
                  "training reward only)", "give the data a held-out split (data.eval_split=test) or leave records "
                  "out of training (data.num_samples=N: the records after the first N are held out); or eval=none",
                  severity="warning")


def with_environment(ctx):
    if heldout.enabled(ctx.cfg) and heldout.has_environment(ctx.cfg):
        yield Problem("eval.name", "heldout", "held-out evaluation does not run with an environment yet (each "
                      "held-out rollout would need its own environment, reset with its row, as TRL does in "
                      "training): this run reports its training reward only", "eval=none to silence this; tools "
                      "without an environment (tools=[...]) are evaluated", severity="warning")


def correct_reward(ctx):
    cfg = ctx.cfg
    if not heldout.enabled(cfg):
        return
    wanted, labels = get(cfg, "eval.correct"), list((cfg.get("reward") or {}).keys())
    if wanted == "auto":
        if correctness_reward(cfg) is None:
            yield Problem("eval.correct", "auto", f"none of this run's rewards ({', '.join(labels)}) says whether an "
                          "answer is right, so the held-out evaluation is skipped", "name the reward that marks a "
                          "completion correct (score >= 1): eval.correct=<reward label>; or eval=none",
                          severity="warning")
    elif wanted not in labels:
        yield Problem("eval.correct", wanted, f"not a reward of this run (its rewards: {', '.join(labels)}): a "
                      "completion is correct when this reward gives it 1", "set eval.correct to the run's "
                      "correctness reward, or eval.correct=auto (the first of accuracy, exact, numeric, countdown)")


def sampling(ctx):
    cfg = ctx.cfg
    if not heldout.enabled(cfg):
        return
    k, temperature = get(cfg, "eval.k"), get(cfg, "eval.temperature")
    if isinstance(k, int) and k > 1 and temperature == 0:
        yield Problem("eval.temperature", 0.0, f"greedy decoding gives the same completion {k} times: pass@{k} and "
                      f"maj@{k} equal pass@1", f"sample the {k}: eval.temperature=1.0 (or eval.k=1)",
                      severity="warning")


def completion_fits(ctx):
    cfg = ctx.cfg
    if not heldout.enabled(cfg) or not get(cfg, "eval.max_tokens"):
        return
    plan = ctx.plan
    tokens = int(get(cfg, "eval.max_tokens"))
    room = plan.max_model_len - plan.prompt_tokens
    if tokens > room:
        yield Problem("eval.max_tokens", tokens, f"the engine holds {plan.max_model_len} tokens per sequence and the "
                      f"longest prompt takes ~{plan.prompt_tokens}: at most {room} are left for an eval completion",
                      f"set eval.max_tokens<={room}, or raise trainer.max_completion_length (the engine's length "
                      "follows it)")


RULES: list[Rule] = [
    Rule("eval.environment", ("eval.name", "environment._target_"), with_environment,
         doc="held-out evaluation is skipped with an environment (warning)"),
    Rule("eval.data", ("eval.name", "data.eval_split", "data.num_samples"), heldout_data,
         doc="held-out evaluation has prompts the model does not train on (warning: else it is skipped)"),
    Rule("eval.correct", ("eval.correct", "reward.*"), correct_reward,
         doc="the reward that marks an eval completion correct is one of the run's"),
    Rule("eval.sampling", ("eval.k", "eval.temperature"), sampling, doc="k > 1 samples are sampled (warning)"),
    Rule("eval.max_tokens", ("eval.max_tokens", "trainer.max_completion_length", "engine.max_model_len"),
         completion_fits, doc="an eval completion fits the engine's sequence length"),
]
