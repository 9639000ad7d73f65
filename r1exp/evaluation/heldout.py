"""The held-out prompts of a run: rows of the same shape as the training rows, on questions it does not train on.

Where they come from (`heldout_rows`), in order:
- `data.eval_split`: that split of the dataset (a hub dataset, a folder, a JSON object of lists);
- a generated task (data=arithmetic, countdown): the questions of its held-out share (a stable hash of the question
  text puts 1 in HOLDOUT_SHARE aside; the training rows leave them out: `training_filter`), drawn with their own
  seed;
- a file or hub dataset read with data.num_samples: the records after the training ones.
Otherwise there is no held-out data and the pre-flight says what to set (rule eval.data). `overlap` counts held-out
prompts whose question is also a training one (in the eval record's `set`, and said when there are any).
"""

from __future__ import annotations

import hashlib

from r1exp import data

HOLDOUT_SHARE = 6          # a generated task keeps one question in six for evaluation
SEED_OFFSET = 1_000_003    # the held-out draw's seed: the data seed plus this, so it is its own draw
DRAWS_PER_PROMPT = 40      # a generated task draws this many examples per wanted prompt to find distinct ones


CORRECTNESS = ("accuracy", "exact", "numeric", "countdown")   # the shipped rewards that say whether an answer is right


def correctness_reward(cfg) -> str | None:
    """The reward label whose score >= 1 marks an eval completion correct: eval.correct, or with `auto` the first
    reward of the run that checks the answer (None when it has none)."""
    wanted = str(cfg.eval.get("correct", "auto"))
    rewards = cfg.get("reward") or {}
    if wanted != "auto":
        return wanted if wanted in rewards else None
    return next((str(label) for label, entry in rewards.items()
                 if str((entry or {}).get("name", label)) in CORRECTNESS), None)


def runs(cfg) -> bool:
    """Whether this run evaluates: eval=heldout, held-out prompts, a reward that says what is correct, and no
    environment (its rollouts need one environment per prompt, reset with the prompt's row: training's alone)."""
    return (enabled(cfg) and source_of(cfg) is not None and correctness_reward(cfg) is not None
            and not has_environment(cfg))


def has_environment(cfg) -> bool:
    node = cfg.get("environment")
    return node is not None and bool(node.get("_target_"))


def enabled(cfg) -> bool:
    node = cfg.get("eval")
    return node is not None and str(node.get("name", "none")) != "none"


def is_held_out(question: str) -> bool:
    """A generated task's question set aside for evaluation (the same on every machine and run)."""
    return int(hashlib.sha1(question.encode()).hexdigest(), 16) % HOLDOUT_SHARE == 0


def training_filter(cfg):
    """A predicate on training rows, or None: a generated task evaluated on its held-out share trains without it."""
    if not runs(cfg) or not data.is_generated(cfg.data) or cfg.data.get("eval_split"):
        return None
    return lambda row: not is_held_out(_question(row["prompt"]))


def source_of(cfg) -> str | None:
    """Where the held-out prompts come from, in words; None when the run has none."""
    d = cfg.data
    if d.get("eval_split"):
        return f"data={d.name} split {d.eval_split}"
    if data.is_generated(d):
        return f"data={d.name}, held-out questions (1 in {HOLDOUT_SHARE}), seed {int(d.seed) + SEED_OFFSET}"
    if d.get("num_samples"):
        return f"data={d.name}, the records after the first {d.num_samples}"
    return None


def heldout_rows(cfg, n: int) -> list[dict]:
    """Up to n held-out rows (prompt, answer and the reward columns), distinct questions."""
    d = data.plain_config(cfg.data)
    system = d.get("system_prompt")
    if d.get("eval_split"):
        examples = data.examples(data.plain_config({**d, "split": d["eval_split"]}), n)
    elif data.is_generated(d):
        drawn = data.examples(d, n * DRAWS_PER_PROMPT, seed=int(d["seed"]) + SEED_OFFSET)
        examples = _distinct([e for e in drawn if is_held_out(e.question)])[:n]
    elif d.get("num_samples"):
        skip = int(d["num_samples"])
        examples = data.examples(data.plain_config({**d, "num_samples": skip + n}), skip + n)[skip:]
    else:
        raise ValueError(f"data={d['name']} has no held-out prompts: set data.eval_split or data.num_samples")
    return [data.row_of(e, system) for e in examples]


def overlap(rows: list[dict], training_prompts) -> int:
    """How many held-out rows ask a question the training rows ask too (a generated task's are disjoint by design;
    a dataset's test split may repeat training questions)."""
    training = {_question(p) for p in training_prompts}
    return sum(_question(r["prompt"]) in training for r in rows)


def _distinct(examples: list) -> list:
    seen, out = set(), []
    for e in examples:
        if e.question not in seen:
            seen.add(e.question)
            out.append(e)
    return out


def _question(prompt) -> str:
    """The user's text of a prompt (chat messages) or the prompt itself."""
    if isinstance(prompt, list):
        return next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), str(prompt))
    return str(prompt)
