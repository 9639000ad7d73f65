"""Datasets: every source becomes the same rows, so every engine sees the same prompts.

A row has `prompt` (chat messages: optional system prompt + the question), `answer` (the gold answer as text)
and any extra columns a reward needs. TRL applies the tokenizer's chat template to `prompt` for every engine.

Sources: tasks generated offline from a seed (`data.name` in GENERATORS: arithmetic, countdown, sums), or records read
from `data.path` (a local jsonl/json/csv/parquet file or folder, or a hub dataset name) and mapped by
`prompt_field`, `answer_field`, `answer_format` (plain | gsm8k), `keep_fields`, `prompt_template`. The answer
format the rewards look for is `data.tags` (r1exp.data.tags). Each option's keys are declared in
r1exp.config.schema (`data_class`).
Importing this package is light (no datasets, no torch): validation and the reward sanity check use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from r1exp.data import arithmetic, countdown, files, sums
from r1exp.data.example import Example
from r1exp.data.records import ANSWER_FORMATS, FieldError, example_of

__all__ = ["Example", "FieldError", "ANSWER_FORMATS", "GENERATORS", "examples", "rows", "build_dataset",
           "columns_of", "is_local", "is_generated", "messages"]


@dataclass(frozen=True)
class Generator:
    generate: Callable    # (data_cfg, n, seed) -> list[Example]
    columns: tuple        # the dataset columns besides `prompt`


GENERATORS = {
    "arithmetic": Generator(arithmetic.generate, ("answer",)),
    "countdown": Generator(countdown.generate, countdown.COLUMNS),
    "sums": Generator(sums.generate, ("answer",)),
}


def is_generated(data_cfg) -> bool:
    return str(data_cfg.name) in GENERATORS


def is_local(data_cfg) -> bool:
    """Generated, or read from a local file or folder (so a dry run can look at it)."""
    if is_generated(data_cfg):
        return True
    path = files.local_path(data_cfg)
    return path is not None and path.exists()


def columns_of(data_cfg) -> tuple:
    """The dataset columns rewards can read (all but `prompt`), known from the config alone."""
    if is_generated(data_cfg):
        return GENERATORS[str(data_cfg.name)].columns
    return ("answer", *[str(k) for k in (data_cfg.get("keep_fields") or [])])


def messages(question: str, system_prompt: str | None) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": question}]


def examples(data_cfg, n: int | None = None, seed: int | None = None) -> list[Example]:
    """The task's examples: generated from `seed` (default data.seed), or the first `n` records of the file (default
    data.num_samples; None = all). Files keep their order: the trainer's sampler shuffles."""
    count = n if n is not None else data_cfg.get("num_samples")
    if is_generated(data_cfg):
        if count is None:
            raise ValueError(f"data={data_cfg.name} is generated: set data.num_samples")
        generator = GENERATORS[str(data_cfg.name)]
        return generator.generate(data_cfg, int(count), int(seed if seed is not None else data_cfg.seed))
    if not data_cfg.get("path"):
        raise ValueError(f"data={data_cfg.name} reads a file or hub dataset: set data.path")
    plain = plain_config(data_cfg)  # read once per record: a dict is ~50x faster than a DictConfig
    located = files.read_located(plain, None if count is None else int(count))
    return [_example(where, r, plain) for where, r in located]


class RecordFieldError(files.DataError, FieldError):
    """A record lacks a configured field: a FieldError named by file and line (a ConfigError: exit 2)."""


class _Plain(dict):
    """A plain dict that also reads as attributes (`cfg.path`), like the DictConfig it replaces."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def plain_config(data_cfg):
    from omegaconf import OmegaConf

    if OmegaConf.is_config(data_cfg):
        return _Plain(OmegaConf.to_container(data_cfg, resolve=True))
    return data_cfg if isinstance(data_cfg, _Plain) else _Plain(data_cfg)


def _example(where: str, record: dict, data_cfg) -> Example:
    """One record as an Example; a record that lacks a field is named by its line (exit 2, not a traceback)."""
    try:
        return example_of(record, data_cfg)
    except (FieldError, KeyError, IndexError, ValueError) as e:  # a missing field, a prompt_template's {field}
        raise RecordFieldError.at(data_cfg.path, where, str(e).strip("'\""),
                                 "add the field to that record or remove the record; or map another field with "
                                 "data.prompt_field / data.answer_field") from None


def row_of(example: Example, system_prompt: str | None) -> dict:
    if example.messages:
        prompt = [dict(m) for m in example.messages]
        if system_prompt and not any(m.get("role") == "system" for m in prompt):
            prompt.insert(0, {"role": "system", "content": system_prompt})
    else:
        prompt = messages(example.question, system_prompt)
    return {"prompt": prompt, "answer": example.answer, **dict(example.extra)}


def rows(data_cfg, n: int | None = None) -> list[dict]:
    return [row_of(ex, data_cfg.get("system_prompt")) for ex in examples(data_cfg, n)]


def build_dataset(data_cfg, keep=None):
    """The training dataset as a `datasets.Dataset` with `prompt`, `answer` and extra columns; `keep`: a predicate on
    rows (held-out questions left out, r1exp.evaluation.heldout)."""
    from datasets import Dataset

    return Dataset.from_list([r for r in rows(data_cfg) if keep is None or keep(r)])


def eval_config(data_cfg):
    """The data config of the held-out split (data.eval_split, data.eval_samples rows), or None without one."""
    split = data_cfg.get("eval_split")
    if not split:
        return None
    return _Plain({**plain_config(data_cfg), "split": str(split), "num_samples": data_cfg.get("eval_samples")})


def build_eval_dataset(data_cfg):
    """TRL's eval_dataset: the same data read from data.eval_split, or None."""
    held_out = eval_config(data_cfg)
    return None if held_out is None else build_dataset(held_out)
