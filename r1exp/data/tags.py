"""The tags of the answer format a run teaches: `data.tags`, one place for the whole run.

A completion in format is `<think>reasoning</think><answer>answer</answer>` by default (DeepSeek-R1, open-r1).
Public recipes use other tags: Unsloth's notebooks `<reasoning>...</reasoning><answer>...</answer>` or
`<start_working_out>...<end_working_out><SOLUTION>...</SOLUTION>`. The data declares the run's tags
(`+data.tags={think: [open, close], answer: [open, close]}`, either pair may be left out and keeps its default);
every reward that reads tags takes a `tags` parameter that follows `data.tags` (conf/reward/*.yaml), and the reward
sanity check builds its well-formatted completions with them. A reward can be given its own
(`reward.<label>.tags=...`).

`data.tags` is absent from the shipped data options on purpose: every key of `data` enters the tiny model's build
recipe (r1exp.models.tiny.build_spec), and the default run must keep its shipped build. Absent means the defaults.
Import-light: the standard library (and omegaconf, to read a config value).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from r1exp.errors import Problem

PARTS = ("think", "answer")
DEFAULT_PAIRS = {"think": ("<think>", "</think>"), "answer": ("<answer>", "</answer>")}
EXAMPLE = "\"+data.tags={think: ['<start_working_out>','<end_working_out>'], answer: ['<SOLUTION>','</SOLUTION>']}\""


@dataclass(frozen=True)
class Tags:
    """The two tag pairs of the answer format: the reasoning (`think`) and the answer (`answer`)."""

    think: tuple = DEFAULT_PAIRS["think"]
    answer: tuple = DEFAULT_PAIRS["answer"]

    @classmethod
    def of(cls, value) -> Tags:
        """Tags from a reward's or the data's `tags` value: None = the defaults; a mapping's missing pair keeps its
        default. Malformed values are refused before the run (`tag_problems`); here they raise ValueError."""
        if value is None:
            return DEFAULT
        if isinstance(value, Tags):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"tags must be a mapping {{think: [open, close], answer: [open, close]}}, got {value!r}")
        pairs = {part: tuple(str(t) for t in value.get(part) or DEFAULT_PAIRS[part]) for part in PARTS}
        if any(len(pair) != 2 or not all(pair) for pair in pairs.values()):
            raise ValueError(f"each tag pair is [open, close], two non-empty strings: got {value!r}")
        return cls(**pairs)

    @property
    def all(self) -> tuple:
        return (*self.think, *self.answer)

    def wrap(self, answer: str, reasoning: str) -> str:
        """A completion in this format."""
        return f"{self.think[0]}{reasoning}{self.think[1]}{self.answer[0]}{answer}{self.answer[1]}"

    def describe(self) -> str:
        """The format in words for messages: <think>...</think><answer>...</answer>."""
        return self.wrap("...", "...")

    @property
    def format_pattern(self) -> re.Pattern:
        """The whole completion is the reasoning block, then the answer block (space around allowed)."""
        return _compiled(r"^\s*{t0}.*?{t1}\s*{a0}.*?{a1}\s*$", self)

    @property
    def answer_pattern(self) -> re.Pattern:
        return _compiled(r"{a0}(.*?){a1}", self)

    @property
    def think_pattern(self) -> re.Pattern:
        return _compiled(r"{t0}(.*?){t1}", self)


DEFAULT = Tags()


def configured(node):
    """A `tags` value read from the config, as plain Python (a DictConfig becomes a dict), interpolations resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@functools.lru_cache(maxsize=64)
def _compiled(template: str, tags: Tags) -> re.Pattern:
    t0, t1, a0, a1 = (re.escape(tag) for tag in tags.all)
    return re.compile(template.format(t0=t0, t1=t1, a0=a0, a1=a1), re.S)


def tag_problems(value, key: str) -> list[Problem]:
    """What is wrong with a `tags` value (data.tags or reward.<label>.tags), each with its fix. None is fine (the
    defaults); types the schema reports (data.tags) are reported here too for a reward's own tags."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [Problem(key, value, "tags are a mapping of two pairs: {think: [open, close], answer: [open, close]}",
                        f"write {key} as such a mapping (a pair left out keeps its default), e.g. {EXAMPLE}")]
    out = [Problem(f"{key}.{extra}", value[extra], f"not a tag pair: the pairs are {' and '.join(PARTS)}",
                   f"use {key}.think and {key}.answer") for extra in value if extra not in PARTS]
    pairs = {}
    for part in PARTS:
        pair = value.get(part)
        if pair is None:
            pairs[part] = DEFAULT_PAIRS[part]
            continue
        problem = _pair_problem(pair, f"{key}.{part}", part)
        if problem:
            out.append(problem)
        else:
            pairs[part] = tuple(pair)
    if not out:
        out += _clashes(pairs, key)
    return out


def _pair_problem(pair, key: str, part: str) -> Problem | None:
    default = DEFAULT_PAIRS[part]
    fix = f"give an opening and a closing tag, e.g. \"{key}=['{default[0]}','{default[1]}']\" (the default)"
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
        return Problem(key, pair, "a tag pair is [open, close]: two strings", fix)
    if not all(t.strip() for t in pair):
        return Problem(key, list(pair), "an empty tag matches everywhere: completions are scored as if tagged", fix)
    if pair[0] == pair[1]:
        return Problem(key, list(pair), f"the opening and the closing tag are the same ({pair[0]!r}): a reward cannot "
                       "tell where the block ends", fix)
    return None


def _clashes(pairs: dict, key: str) -> list[Problem]:
    """The reasoning block and the answer block must be told apart: no tag may serve both."""
    if pairs["think"] == pairs["answer"]:
        return [Problem(key, {p: list(v) for p, v in pairs.items()}, "the reasoning and the answer have the same "
                        "tags: the answer cannot be told from the reasoning",
                        f"give the answer its own tags, e.g. {EXAMPLE}")]
    shared = sorted(set(pairs["think"]) & set(pairs["answer"]))
    if shared:
        return [Problem(key, {p: list(v) for p, v in pairs.items()}, f"{', '.join(shared)} is both a reasoning and an "
                        "answer tag: the blocks cannot be told apart", f"use four different tags, e.g. {EXAMPLE}")]
    return []
