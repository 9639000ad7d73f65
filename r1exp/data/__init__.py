"""Datasets: every source becomes the same rows, so every engine sees the same prompts.

A row has `prompt` (chat messages: optional system prompt + the question), `answer` (the gold answer as text)
and any extra columns a reward needs. TRL applies the tokenizer's chat template to `prompt` for every engine.
"""

from __future__ import annotations

from r1exp.data import arithmetic
from r1exp.data.example import Example

GENERATED = {"arithmetic": arithmetic.generate}


def messages(question: str, system_prompt: str | None) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": question}]


def examples(data_cfg, n: int | None = None, seed: int | None = None) -> list[Example]:
    """The task's examples (generated tasks only need the config; files are read by their loaders)."""
    name = data_cfg.name
    if name not in GENERATED:
        raise ValueError(f"data={name} has no generator")
    count = int(n if n is not None else data_cfg.num_samples)
    return GENERATED[name](data_cfg, count, int(seed if seed is not None else data_cfg.seed))


def build_dataset(data_cfg):
    """The training dataset as a `datasets.Dataset` with `prompt`, `answer` and extra columns."""
    from datasets import Dataset

    rows = []
    for ex in examples(data_cfg):
        row = {"prompt": messages(ex.question, data_cfg.get("system_prompt")), "answer": ex.answer}
        row.update(dict(ex.extra))
        rows.append(row)
    return Dataset.from_list(rows)
