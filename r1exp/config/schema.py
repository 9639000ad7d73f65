"""The typed schema of r1exp's own keys, as pydantic models, and its errors as r1exp Problems.

Each group that is not a component (the top level, hardware, checks, model, data, logger) is a model below; an
engine's or a loader's fields are its own class (r1exp.components); trainer.* keys are typed by the installed
trl.GRPOConfig (r1exp.grpo.fields), and the ranges r1exp knows for them are `TrainerRanges`. Every error keeps the
key / value / why / fix form: a wrong type is rule `schema.type`, a number out of range rule `range`, a key that
does not exist `schema.key`, a deleted required key `schema.missing`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from omegaconf import OmegaConf
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from r1exp.errors import Problem

NAME_MAX_BYTES = 120    # the run folder is <time>_<name>: keep it well under the 255-byte limit of a file name


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class Open(Strict):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


PositiveInt = Annotated[int, Field(ge=1)]


def _steps(value: int) -> int:
    if value == 0 or value < -1:
        raise PydanticCustomError("greater_than", "Input should be greater than 0", {"gt": "0 (or -1: train for "
                                                                                             "num_train_epochs)"})
    return value


class Hardware(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_gpus: int | None = Field(None, ge=0, le=1024)
    gpu_memory_gb: float | None = Field(None, gt=0, le=100_000, description="the memory of one GPU")
    kernel_cache: str | None = Field(None, description="a folder for every compiled-kernel cache")


class Checks(Open):
    reward_sanity: bool = True
    reward_sanity_samples: int = Field(16, ge=1, le=10_000, description="rows the reward sanity check scores")
    max_reward_failure_rate: float = Field(0.1, ge=0, le=1)
    reward_time_budget_s: float = Field(30.0, gt=0, description="seconds one reward call may take")


class Arch(Strict):
    family: Literal["qwen2", "qwen3", "llama"]
    params: float = Field(gt=0)
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt | None = None
    intermediate: PositiveInt
    vocab: PositiveInt
    tie_embeddings: bool = True
    max_position: PositiveInt


class Lora(Strict):
    r: int = Field(ge=1, description="the LoRA rank")
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)


class Warmup(Strict):
    """The tiny model's warm-up on the task's own text (r1exp/models/tiny.py, conf/model/tiny.yaml)."""

    batch_size: int = Field(32, ge=1)
    steps: int = Field(ge=0)
    learning_rate: float = Field(gt=0)
    format_rate: float = Field(ge=0, le=1)
    think_rate: float = Field(ge=0, le=1)
    sloppy_steps: int = Field(ge=0)
    sloppy_learning_rate: float = Field(gt=0)
    sloppy_format_rate: float = Field(ge=0, le=1)
    sloppy_think_rate: float = Field(ge=0, le=1)


class Model(Strict):
    name_or_path: str = Field(min_length=1)
    init: Literal["pretrained", "random"]
    dtype: Literal["float32", "bfloat16", "float16"]
    max_seq_length: PositiveInt
    warmup: Warmup | None = None
    arch: Arch
    lora: Lora


class Data(Open):
    name: str
    path: str | None = None
    split: str = "train"
    prompt_field: str = "question"
    answer_field: str = "answer"
    system_prompt: str | None = None
    num_samples: PositiveInt | None = None
    max_prompt_tokens: PositiveInt | None = None
    seed: int = Field(0, ge=0, le=2**32 - 1)


class Logger(Open):
    name: str
    project: str = "r1exp"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    log_completions: bool = True


class Run(Open):
    seed: int = Field(ge=0, le=2**32 - 1, description="numpy and torch take seeds in [0, 2^32)")
    dry_run: bool = False
    name: str = Field(min_length=1, max_length=NAME_MAX_BYTES, pattern=r"^[^/\x00]+$",
                      description="the run folder's suffix: no '/'")
    resume: bool = False
    reproducible: bool = False
    hardware: Hardware
    checks: Checks
    model: Model
    data: Data
    logger: Logger
    engine: Any
    loader: Any
    trainer: Any
    reward: Any


class TrainerRanges(BaseModel):
    """The ranges r1exp knows for trainer.* keys (types come from the installed GRPOConfig)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    learning_rate: float | None = Field(None, gt=0, description="a zero or negative learning rate never moves the "
                                                                 "adapter")
    max_steps: Annotated[int, AfterValidator(_steps)] | None = None
    num_train_epochs: float | None = Field(None, gt=0)
    per_device_train_batch_size: PositiveInt | None = None
    gradient_accumulation_steps: PositiveInt | None = None
    steps_per_generation: PositiveInt | None = None
    generation_batch_size: PositiveInt | None = None
    max_completion_length: PositiveInt | None = None
    temperature: float | None = Field(None, gt=0, description="sampling divides the logits by the temperature")
    top_p: float | None = Field(None, gt=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    beta: float | None = Field(None, ge=0, description="the KL penalty's weight; 0 turns the reference model off")
    epsilon: float | None = Field(None, ge=0)
    epsilon_high: float | None = Field(None, ge=0)
    num_iterations: PositiveInt | None = None
    logging_steps: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    max_grad_norm: float | None = Field(None, ge=0)
    warmup_steps: float | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


RANGE_ERRORS = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
                "less_than_equal": "<= {le}", "finite_number": "a finite number", "too_short": "not empty",
                "string_too_short": "not empty", "string_too_long": "at most {max_length} characters (too long)",
                "string_pattern_mismatch": "without '/'"}


def problems_of(error: ValidationError, prefix: str, model_cls, data, only_ranges: bool = False) -> list[Problem]:
    """One Problem per pydantic error, keyed by the dotted config key."""
    out = []
    for err in error.errors(include_url=False):
        loc = tuple(str(part) for part in err["loc"] if not str(part).startswith(("function-", "lax-", "strict-")))
        loc = _strip_union_tags(loc, model_cls)
        key = ".".join(filter(None, (prefix, *loc)))
        kind = err["type"]
        if only_ranges and kind not in RANGE_ERRORS:
            continue
        out.append(_problem(key, err, kind, _description(model_cls, loc), model_cls, loc, data))
    return out


def _problem(key, err, kind, why_more, model_cls, loc, data) -> Problem:
    value = err.get("input")
    if kind in RANGE_ERRORS:
        expected = RANGE_ERRORS[kind].format(**{k: v for k, v in (err.get("ctx") or {}).items()})
        why = f"must be {expected}" + (f" ({why_more})" if why_more else "")
        if kind == "string_too_long":
            fix = f"use a shorter {key}=... ({expected})"
        else:
            fix = f"set {key} {expected}" if expected[0] in "<>" else f"set {key} to {expected}"
        return Problem(key, value, why, fix, rule="range")
    if kind == "missing":
        return Problem(key, "(missing)", "this key is required and the config no longer has it",
                       f"do not delete {key} (drop the ~{key} override) or give it a value: {key}=...",
                       rule="schema.missing")
    if kind == "extra_forbidden":
        known = list(_fields_at(model_cls, loc[:-1]))
        close = difflib.get_close_matches(loc[-1], known, n=2, cutoff=0.6)
        parent = key.rpartition(".")[0]
        fix = (f"did you mean {' or '.join(f'{parent}.{c}' for c in close)}?" if close else
               f"keys under {parent or 'the top level'}: {', '.join(sorted(known))}")
        return Problem(key, value, f"{key} is not a key of the config (nothing reads it)", fix, rule="schema.key")
    from r1exp.config.compose import CONF_DIR

    group = key.split(".")[0]
    where = f"conf/{group}/" if (CONF_DIR / group).is_dir() else "conf/config.yaml"   # a group's folder, or the
                                                                                       # primary config's own keys
    return Problem(key, value, f"expected {_expected(err)}",
                   f"set {key} to {_expected(err)} (see {where})", rule="schema.type")


def _expected(err) -> str:
    msg = err["msg"]
    return msg.removeprefix("Input should be ").removeprefix("input should be ")


def _strip_union_tags(loc: tuple, model_cls) -> tuple:
    """pydantic adds the tried member of a union to the location ('num_gpus', 'int'): keep field names only."""
    out, cls = [], model_cls
    for part in loc:
        fields = getattr(cls, "model_fields", None)
        if fields is None:
            if part.isdigit():
                out.append(part)
            continue
        if part in fields:
            out.append(part)
            cls = _model_of(fields[part].annotation)
        elif cls is not None and getattr(cls, "model_config", {}).get("extra") in ("allow", "forbid"):
            out.append(part)
            cls = None
    return tuple(out)


def _model_of(annotation):
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _fields_at(model_cls, loc: tuple) -> dict:
    cls = model_cls
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        cls = _model_of(field.annotation) if field is not None else None
    return getattr(cls, "model_fields", {}) if cls is not None else {}


def _description(model_cls, loc: tuple) -> str:
    if not loc:
        return ""
    field = _fields_at(model_cls, loc[:-1]).get(loc[-1])
    return (field.description or "") if field is not None else ""


def schema_problems(cfg) -> list[Problem]:
    """Types and ranges of r1exp's own keys and of the trainer's known ranges."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    out = []
    try:
        Run.model_validate(plain)
    except ValidationError as e:
        out += problems_of(e, "", Run, plain)
    trainer = plain.get("trainer")
    if isinstance(trainer, dict):
        try:
            TrainerRanges.model_validate(trainer)
        except ValidationError as e:
            out += problems_of(e, "trainer", TrainerRanges, trainer, only_ranges=True)
    return out
