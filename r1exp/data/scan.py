"""Every record of a local data file checked before anything loads, not a sample.

The run reads the whole file (or its first data.num_samples records) when it builds the dataset; a bad record there
used to stop it after the model was loaded, with a traceback. `scan` reads the same records the same way
(r1exp.data.examples: streaming, line by line) and turns each into an Example, so anything that would fail at load
time fails here first, named by file and line (r1exp.data.files.DataError): a line that is not JSON, bytes that
are not UTF-8, a record that lacks the prompt or answer field or has it empty. It also finds the longest prompt of
the whole file: the length rule measures a sample (r1exp.data.prompts.SAMPLE records), so a prompt past the
sample that cannot fit the model is reported here, by its line.

A scan of a 100k-record jsonl takes well under a second (bench/data_scan.py); its result is cached per file
content and data config, so the jobs of a sweep read the file once.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass

from omegaconf import OmegaConf

from r1exp.errors import Problem


@dataclass(frozen=True)
class Scan:
    records: int
    seconds: float
    longest_chars: int = 0      # system prompt + question (or messages) of the longest prompt
    longest_where: str = ""     # "line 161"
    longest_index: int = 0      # 0-based position among the records


def scan(data_cfg) -> Scan:
    """Read and convert every record the run will read; DataError (exit 2) names the first bad one."""
    from r1exp.data import files

    path = files.local_path(data_cfg)
    stat = path.stat() if path is not None and path.is_file() else None
    plain = OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    key = json.dumps(plain, sort_keys=True, default=str)
    result = _scan(key, (stat.st_mtime_ns, stat.st_size) if stat else None)
    if isinstance(result, Exception):
        raise result
    return result


@functools.lru_cache(maxsize=16)
def _scan(data_json: str, file_version) -> Scan | Exception:
    from r1exp.data import _example, files, plain_config

    data_cfg = plain_config(json.loads(data_json))
    start = time.perf_counter()
    count = data_cfg.get("num_samples")
    system = len(str(data_cfg.get("system_prompt") or ""))
    fields = (str(data_cfg.prompt_field), str(data_cfg.answer_field))
    longest = (0, "", 0)
    located: list = []
    try:
        located = files.read_located(data_cfg, None if count is None else int(count))
        for n, (where, record) in enumerate(located):
            example = _example(where, record, data_cfg)
            for name in fields:
                value = record[name]
                if value is None or (isinstance(value, (str, list)) and not value):
                    raise files.DataError.at(data_cfg.path, where, f"the field {name!r} is "
                                             f"{'null' if value is None else 'empty'}",
                                             "give that record a value or remove it")
            chars = system + (sum(len(str(m.get("content", ""))) for m in example.messages) if example.messages
                              else len(example.question))
            if chars > longest[0]:
                longest = (chars, where, n)
    except files.DataError as e:
        return e
    return Scan(len(located), time.perf_counter() - start, *longest)


def whole_file(ctx):
    """A validation rule: every record of a local data file can be read and used (see the module's doc)."""
    from r1exp import data
    from r1exp.data import files

    d = OmegaConf.select(ctx.cfg, "data", default=None)
    if d is None or data.is_generated(d) or not d.get("path"):
        return
    path = files.local_path(d)
    if path is None or not path.exists():
        return  # a hub name, or a missing file (the data.path rule says so)
    try:
        result = scan(d)
    except files.DataError as e:
        yield from e.problems
        return
    except (OSError, ValueError):
        return  # unreadable as a whole (unknown suffix, ...): the data.source rule reports it
    yield from _long_prompt(ctx.cfg, result)


def _long_prompt(cfg, result: Scan):
    """The longest prompt past the length rule's sample, when it cannot fit with the completion."""
    from r1exp.data.prompts import SAMPLE, TEMPLATE_TOKENS
    from r1exp.models.tokens import CHARS_PER_TOKEN

    if result.longest_index < SAMPLE or cfg.data.get("max_prompt_tokens"):
        return  # the length rule measured it (or the user gave the prompt length)
    seq = OmegaConf.select(cfg, "model.max_seq_length", default=None)
    completion = OmegaConf.select(cfg, "trainer.max_completion_length", default=None)
    vocab = OmegaConf.select(cfg, "model.arch.vocab", default=None) or 151936
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, completion, vocab)):
        return
    per_token = CHARS_PER_TOKEN["large" if vocab >= 32000 else "small"]
    tokens = math.ceil(result.longest_chars / per_token) + TEMPLATE_TOKENS
    if tokens + completion > seq:
        yield Problem("data.path", str(cfg.data.path),
                      f"{cfg.data.path}, {result.longest_where}: the prompt has {result.longest_chars:,} characters "
                      f"(~{tokens:,} tokens); with trainer.max_completion_length={completion} it does not fit "
                      f"model.max_seq_length={seq}",
                      "shorten or remove that record (or raise model.max_seq_length, or set data.num_samples to "
                      "leave it out)", rule="data.whole_file")


def data_rules() -> list:
    """Rows of the rules table (gathered by r1exp.checks.validate)."""
    from r1exp.config.rule import Rule

    return [Rule("data.whole_file", ("data.path", "data.num_samples", "data.prompt_field", "data.answer_field"),
                 whole_file, doc="every record of a local data file reads, has its fields, and fits (file and line "
                 "named)")]
