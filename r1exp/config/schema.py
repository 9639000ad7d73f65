"""The typed schema of r1exp's own keys, as pydantic models, and its errors as r1exp Problems.

Each group that is not a component (the top level, hardware, checks, model, data, logger) is a closed model below
(a key it does not declare is an error), data with a class per option (`data_class`); an engine's or a loader's
fields are its own class (r1exp.components); trainer.* keys are typed by the installed trl.GRPOConfig
(r1exp.grpo.fields), and the ranges r1exp knows for them are `TrainerRanges`. Every error keeps the key / value /
why / fix form: a wrong type is rule `schema.type`, a number out of range rule `range`, a key that
does not exist `schema.key`, a deleted required key `schema.missing`.
"""

from __future__ import annotations

import difflib
import functools
from typing import Annotated, Any, Literal

from omegaconf import OmegaConf
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError

from r1exp.errors import Problem

NAME_MAX_BYTES = 120    # the run folder is <time>_<name>: keep it well under the 255-byte limit of a file name


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


PositiveInt = Annotated[int, Field(ge=1)]


def _steps(value: int) -> int:
    if value == 0 or value < -1:
        raise PydanticCustomError("greater_than", "Input should be greater than 0", {"gt": "0 (or -1: train for "
                                                                                             "num_train_epochs)"})
    return value


NAME_MAX, PATH_MAX = 255, 4096   # bytes of one name in a path and of a whole path (Linux's limits)


def _fits_a_file_system(value):
    """A path no file system can hold fails here, before any check stats it (OSError: File name too long)."""
    if isinstance(value, str) and (len(value.encode()) > PATH_MAX
                                   or any(len(part.encode()) > NAME_MAX for part in value.split("/"))):
        raise PydanticCustomError("path_too_long", "a path no file system holds: each name in it at most "
                                  f"{NAME_MAX} bytes, all of it at most {PATH_MAX}", {})
    return value


FilePath = Annotated[str, AfterValidator(_fits_a_file_system)]


def fits_a_file_system(path: str) -> bool:
    try:
        _fits_a_file_system(path)
    except PydanticCustomError:
        return False
    return True


class Hardware(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_gpus: int | None = Field(None, ge=0, le=1024)
    gpu_memory_gb: float | None = Field(None, gt=0, le=100_000, description="the memory of one GPU")
    kernel_cache: FilePath | None = Field(None, description="a folder for every compiled-kernel cache")


class Checks(Strict):
    reward_sanity: bool = True
    reward_sanity_samples: int = Field(16, ge=1, le=10_000, description="rows the reward sanity check scores")
    max_reward_failure_rate: float = Field(0.1, ge=0, le=1)
    reward_time_budget_s: float | None = Field(30.0, gt=0, description="seconds one reward call may take (null: no "
                                                                        "budget)")


class Arch(Strict):
    """A model's shape (r1exp.models.architecture): read from its config.json, or given in YAML to plan a model that
    is not downloaded."""

    family: str = Field(min_length=1, description="the config's model_type (r1exp/models/families.py)")
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
    active_params: float | None = Field(None, gt=0, description="a mixture of experts: parameters a token uses")
    experts: int | None = Field(None, ge=0)
    experts_per_token: int | None = Field(None, ge=0)
    modules: list[str] | None = None      # the linear modules LoRA can target (read from the config)
    source: str | None = None             # the config.json these numbers were read from


class Lora(Strict):
    r: int = Field(ge=1, description="the LoRA rank")
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] | str = Field(min_length=1, description="module names, \"all-linear\" or a regex "
                                                                      "(PEFT's rules)")


class WarmupTools(Strict):
    """The tiny model's warm-up on tool-calling transcripts (r1exp/models/tiny.py, conf/model/tiny_tools.yaml)."""

    functions: list[str] = Field(min_length=1, description="import paths of the tools shown in the prompt; the "
                                                           "transcripts call the first")
    call_rate: float = Field(ge=0, le=1)
    sloppy_call_rate: float = Field(ge=0, le=1)


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
    tools: WarmupTools | None = None


class Model(Strict):
    name_or_path: FilePath = Field(min_length=1)
    init: Literal["pretrained", "random"]
    dtype: Literal["float32", "bfloat16", "float16"]
    max_seq_length: PositiveInt | None = Field(None, description="the longest sequence (null: the model's context)")
    warmup: Warmup | None = None
    chat_template: str | None = Field(None, min_length=1, description="a Jinja chat template (or a file holding "
                                                                       "one) that replaces the tokenizer's")
    arch: Arch | None = None
    lora: Lora


class Data(Strict):
    """The keys every data option has (conf/data/*.yaml). Each option's own keys are its subclass below, chosen by
    `data.name` (`data_class`), so a key no option reads (a typo) is refused with "did you mean"."""

    name: str
    path: FilePath | None = None
    split: str = "train"
    prompt_field: str = "question"
    answer_field: str = "answer"
    system_prompt: str | None = None
    num_samples: PositiveInt | None = None
    max_prompt_tokens: PositiveInt | None = None
    seed: int = Field(0, ge=0, le=2**32 - 1)
    tags: Any = Field(None, description="the answer format's tags (r1exp/data/tags.py; checked by rule data.tags)")


class ArithmeticData(Data):
    """data=arithmetic: generated "What is 3 + 4?" tasks (r1exp/data/arithmetic.py)."""

    max_operand: int = 9
    operations: list[str] = ["+"]


class SumsData(Data):
    """data=sums: generated "What is 4821 + 3770?" tasks (r1exp/data/sums.py)."""

    digits: list[int] = Field([4, 4], min_length=2, max_length=2, description="digits of each number: [min, max]")
    terms: int = Field(2, ge=2)
    max_total: PositiveInt | None = Field(None, description="the largest sum (null: no limit)")


class CountdownData(Data):
    """data=countdown: generated countdown tasks (r1exp/data/countdown.py)."""

    count: list[int] = Field([3, 4], description="how many numbers a task has: [min, max]")
    max_number: int = 20
    max_target: int = 100
    operations: list[str] = ["+", "-", "*"]


class FileData(Data):
    """Data read from data.path, a file or a hub dataset (r1exp/data/files.py, records.py): data=gsm8k, data=jsonl
    and any data option of your own (a conf/data/<name>.yaml whose name is not a generator's)."""

    subset: str | None = None
    format: str = "auto"
    answer_format: str = "plain"
    keep_fields: list[str] = []
    reasoning_field: str | None = None
    prompt_template: str | None = None
    eval_split: str | None = Field(None, min_length=1, description="a split of the same dataset TRL evaluates on "
                                                                   "(its eval_dataset: rewards on held-out prompts)")
    eval_samples: PositiveInt | None = Field(None, description="rows of eval_split (null: all)")


# data.name -> its class: the generators of r1exp.data.GENERATORS; any other name is read from data.path (FileData).
GENERATED_DATA: dict[str, type[Data]] = {"arithmetic": ArithmeticData, "countdown": CountdownData, "sums": SumsData}


def data_class(data) -> type[Data]:
    """The schema of the chosen data option, as r1exp.data picks its source: a generator's name, else a file."""
    name = data.get("name") if isinstance(data, dict) else None
    return GENERATED_DATA.get(name, FileData) if isinstance(name, str) else FileData


def _data_options_with(key: str) -> list[str]:
    """The data options that have `key` ("data=arithmetic"), for the message about a key of another option."""
    found = [f"data={name}" for name, cls in GENERATED_DATA.items() if key in cls.model_fields]
    return found + (["data=gsm8k", "data=jsonl"] if key in FileData.model_fields else [])


class Eval(Strict):
    """Held-out evaluation (conf/eval/, r1exp/evaluation/)."""

    name: Literal["none", "heldout"]
    prompts: PositiveInt = 64
    k: PositiveInt = 1
    temperature: float = Field(0.0, ge=0, le=10)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: PositiveInt | None = None
    every_steps: PositiveInt | None = None
    baseline: bool = True
    final: bool = True
    correct: str = Field("auto", min_length=1, description="the reward label whose score >= 1 is correct (auto: the "
                                                            "first correctness reward)")


class Logger(Strict):
    name: str
    project: str = "r1exp"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    log_completions: bool = True


class Run(Strict):
    """The top level. `hydra` is not among its keys: Hydra keeps its own config apart from the job's (a config
    composed with return_hydra_config=True is never validated)."""

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
    eval: Eval | None = None
    engine: Any
    loader: Any
    trainer: Any
    reward: Any
    tools: Any = None         # r1exp.tools.rules checks them
    environment: Any = None   # r1exp.tools.rules checks it
    distributed: Any = None   # r1exp.scale.distributed's own rows check it
    objective: str | None = Field(None, description="a sweep's metric to optimise: a run.json metric, or eval/<key> "
                                                    "for the final held-out score (sweeps/README.md)")


@functools.cache
def run_class(data_cls: type[Data]) -> type[Run]:
    """Run with `data` typed as the chosen data option, so that option's own keys are known and no others."""
    if data_cls is Data:
        return Run
    return create_model(f"Run_{data_cls.__name__}", __base__=Run, data=(data_cls, ...))


MAX_COUNT = 1_000_000      # batch sizes and step counts: beyond this a number is a typo, not a batch
MAX_TOKENS = 10_000_000   # a completion length: beyond any model's context


class TrainerRanges(BaseModel):
    """The ranges r1exp knows for trainer.* keys (types come from the installed GRPOConfig)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    learning_rate: float | None = Field(None, gt=0, description="a zero or negative learning rate never moves the "
                                                                 "adapter")
    max_steps: Annotated[int, AfterValidator(_steps)] | None = None
    num_train_epochs: float | None = Field(None, gt=0)
    per_device_train_batch_size: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    gradient_accumulation_steps: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    steps_per_generation: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    generation_batch_size: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    max_completion_length: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    num_generations: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
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
    if kind == "path_too_long":
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        return Problem(key, shown, err["msg"], f"use a shorter path for {key} (a link or a shorter folder name)",
                       rule="schema.path")
    if kind == "missing":
        return Problem(key, "(missing)", "this key is required and the config no longer has it",
                       f"do not delete {key} (drop the ~{key} override) or give it a value: {key}=...",
                       rule="schema.missing")
    if kind == "extra_forbidden":
        return _unknown_key(key, value, list(_fields_at(model_cls, loc[:-1])), loc, data)
    from r1exp.config.compose import CONF_DIR

    group = key.split(".")[0]
    where = f"conf/{group}/" if (CONF_DIR / group).is_dir() else "conf/config.yaml"   # a group's folder, or the
                                                                                       # primary config's own keys
    return Problem(key, value, f"expected {_expected(err)}",
                   f"set {key} to {_expected(err)} (see {where})", rule="schema.type")


def _unknown_key(key: str, value, known: list, loc: tuple, data) -> Problem:
    """A key nothing reads: "did you mean" the closest known keys, else the keys there are; under data, the option
    the key belongs to when it is another one's (max_operand is data=arithmetic's)."""
    close = difflib.get_close_matches(loc[-1], known, n=2, cutoff=0.6)
    parent = key.rpartition(".")[0]
    where = "the config"
    if loc[:1] == ("data",) and len(loc) == 2:
        option = (data.get("data") or {}).get("name") if isinstance(data, dict) else None
        where = f"data={option}" if option else "data"
        elsewhere = _data_options_with(loc[-1])
        if elsewhere and not close:
            return Problem(key, value, f"{key} is not a key of {where} (nothing reads it): it is a key of "
                           f"{', '.join(elsewhere)}", f"pick that option ({elsewhere[0]}), or drop {key}",
                           rule="schema.key")
    fix = (f"did you mean {' or '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else
           f"keys under {parent or 'the top level'}: {', '.join(sorted(known))}")
    from r1exp.config.secret_names import REDACTED, is_secret_name

    if is_secret_name(key) and isinstance(value, str):   # never echo a credential (max_prompt_token=4000 is none)
        value = REDACTED
        fix += ("; a credential belongs in the environment (WANDB_API_KEY, HF_TOKEN), where the W&B and hub clients "
                "read it")
    return Problem(key, value, f"{key} is not a key of {where} (nothing reads it)", fix, rule="schema.key")


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
    run = run_class(data_class(plain.get("data")))
    try:
        run.model_validate(plain)
    except ValidationError as e:
        out += problems_of(e, "", run, plain)
    trainer = plain.get("trainer")
    if isinstance(trainer, dict):
        try:
            TrainerRanges.model_validate(trainer)
        except ValidationError as e:
            out += problems_of(e, "trainer", TrainerRanges, trainer, only_ranges=True)
    return out
