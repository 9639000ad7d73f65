"""Rows of the rules table about the data: the file or hub dataset exists, has a known format and the mapped
fields. Import-light (no `datasets`, no torch).

A hub dataset (data.path = owner/name) must be loadable here: in the local caches (`datasets`' prepared copy or the
hub cache) when the hub is offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE) or out of reach,
else known to the hub (one question, 2 s at most, r1exp.machine.hub) and, if gated, with a token."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from r1exp import data
from r1exp.data import files
from r1exp.machine import hub
from r1exp.config.rule import Rule, get
from r1exp.data.tags import DEFAULT, Tags, configured, tag_problems
from r1exp.errors import Problem

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".txt", ".tsv")


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~")) or path.lower().endswith(LOCAL_SUFFIXES) or path.count("/") >= 2


def data_path(ctx):
    path = get(ctx.cfg, "data.path")
    if not isinstance(path, str) or not path:
        return
    local = Path(path).expanduser()
    if _looks_local(path) and not local.exists():
        yield Problem("data.path", path, f"no such file or folder (looked at {local.resolve()})",
                      "fix the path (relative paths start at the folder you run from), or give a hub dataset name "
                      "like openai/gsm8k")
    elif local.exists() and local.is_file() and local.stat().st_size == 0:
        yield Problem("data.path", path, "the file is empty", "point data.path at a file with examples")



def check_data_source(ctx):
    d = OmegaConf.select(ctx.cfg, "data", default=None)
    if d is None or data.is_generated(d):
        return
    if not d.get("path"):
        yield Problem("data.path", None, f"data={d.name} reads a file or a hub dataset and has no path",
                      "set data.path to a local .jsonl/.json/.csv/.parquet file or a hub dataset name")
        return
    fmt = d.get("format")
    if fmt not in (None, "auto", *data.files.FORMATS):
        yield Problem("data.format", fmt, "not a known file format",
                      f"use auto or one of {', '.join(data.files.FORMATS)}")
        return
    answer_format = d.get("answer_format") or "plain"
    if answer_format not in data.ANSWER_FORMATS:
        yield Problem("data.answer_format", answer_format, "not a known answer format",
                      f"use one of {', '.join(data.ANSWER_FORMATS)}")
    local = data.files.local_path(d)
    if local is None:
        return  # a hub name: checked when it is loaded
    if not local.exists():
        return  # reported by the shared data.path rule
    try:
        fields = data.files.field_names(d)
    except Exception as e:  # noqa: BLE001 - an unreadable file is the user's to see
        yield Problem("data.path", d.path, f"cannot read it: {type(e).__name__}: {e}",
                      "check the file and data.format")
        return
    if fields is None:
        return
    keep = list(d.get("keep_fields") or [])
    mapped = {"data.prompt_field": d.get("prompt_field"), "data.answer_field": d.get("answer_field"),
              "data.reasoning_field": d.get("reasoning_field"),
              **{f"data.keep_fields[{i}]": k for i, k in enumerate(keep)}}
    for key, field_name in mapped.items():
        if field_name and field_name not in fields:
            yield Problem(key, field_name, f"{d.path} has no field {field_name!r}",
                          f"its fields are {', '.join(map(str, fields))}")


def hub_dataset(ctx):
    d = OmegaConf.select(ctx.cfg, "data", default=None)
    if d is None or data.is_generated(d) or not isinstance(d.get("path"), str) or not d.get("path"):
        return
    try:
        if data.files.local_path(d) is not None:
            return  # a local file or folder: the data.path row
    except (OSError, ValueError):
        return
    name, subset = str(d.path), d.get("subset")
    if _looks_local(name):
        return  # meant as a file: the data.path row says it is missing
    if not hub.is_repo_id(name):
        yield Problem("data.path", name, "neither a local file or folder nor a hub dataset name (owner/name)",
                      "give a local .jsonl/.json/.csv/.parquet file (./data/train.jsonl) or a hub name like "
                      "openai/gsm8k")
        return
    if hub.dataset_cached(name, str(subset) if subset else None) is not None:
        return
    where = f"the local caches ({hub.datasets_cache()}, {hub.hub_cache()})"
    fix = (f"`hf download {name} --repo-type dataset` on a machine with network (the same HF_HOME; copy the cache "
           "to an offline cluster), or download a file of it and set data.path=/path/to/train.parquet")
    flag = hub.offline(datasets=True)
    if flag:
        yield Problem("data.path", name, f"the hub is offline ({flag}) and the dataset is not in {where}", fix)
        return
    answer = hub.ask(name, "dataset")
    if answer.status == "unreachable":
        yield Problem("data.path", name, f"the dataset is not in {where} and the hub cannot be reached "
                      f"({answer.detail})", fix)
    elif answer.status == "missing":
        yield Problem("data.path", name, f"no such dataset on the hub, or a private one ({answer.detail})",
                      "check the name (owner/name, as on huggingface.co/datasets), or `hf auth login` for a private "
                      "one")
    elif answer.gated and not hub.has_token():
        yield Problem("data.path", name, "a gated dataset: downloading it needs a Hugging Face token with access, "
                      "and none is configured", f"accept its terms on https://huggingface.co/datasets/{name}, then "
                      "`hf auth login` (or set HF_TOKEN)")


def data_tags(ctx):
    """data.tags must name four usable tags: a reward built on an empty or ambiguous tag scores every completion
    alike, and the run learns nothing from it."""
    yield from tag_problems(configured(get(ctx.cfg, "data.tags")), "data.tags")


def warmup_tags(ctx):
    """The tiny model is warmed up on <think>/<answer> text (r1exp.models.tiny), whatever data.tags says: with other
    tags its completions rarely carry them, and the format rewards start (and may stay) at 0."""
    value = configured(get(ctx.cfg, "data.tags"))
    if get(ctx.cfg, "model.warmup") is None or value is None or tag_problems(value, "data.tags"):
        return
    tags = Tags.of(value)
    if tags != DEFAULT:
        yield Problem("data.tags", value, f"the locally built model is warmed up on {DEFAULT.describe()} text "
                      f"(r1exp/models/tiny.py), not on {tags.describe()}: it will rarely write these tags",
                      "expect the format rewards to start near 0, or keep the default tags for model=tiny",
                      severity="warning")


def eval_split(ctx):
    """data.eval_split needs a source with splits: a hub dataset, a folder `datasets` reads, or a JSON object of
    lists. A single .jsonl/.csv/.parquet file has one list of records: its "eval split" would be the training data."""
    cfg = ctx.cfg
    split = get(cfg, "data.eval_split")
    if not split:
        return
    if split == get(cfg, "data.split"):
        yield Problem("data.eval_split", split, "the same split as the training data: the evaluation would score "
                      "prompts the model trains on", "name a held-out split (e.g. data.eval_split=test)")
        return
    plain = data.plain_config(cfg.data)
    path = files.local_path(plain)
    if path is not None and path.is_file() and files.file_format(plain, path) != "json":
        yield Problem("data.eval_split", split, f"{path.name} is one file of records with no splits: the "
                      "evaluation would read the training records again", "point data.path at a folder or hub "
                      "dataset with a held-out split, or a JSON object of lists keyed by split; or drop "
                      "data.eval_split and trainer.eval_strategy")


RULES: list[Rule] = [
    Rule("data.path", ("data.path",), data_path, scope="machine", doc="a local data file exists"),
    Rule("data.hub", ("data.path", "data.subset"), hub_dataset, scope="machine",
         doc="a hub dataset is in the local cache, or (online) on the hub and not gated without a token"),
    Rule("data.source", ("data.path", "data.format", "data.answer_format", "data.prompt_field", "data.answer_field",
                         "data.keep_fields"), check_data_source,
         doc="file and hub data have a path and known formats; a local file has the mapped fields"),
    Rule("data.eval_split", ("data.eval_split", "data.split", "data.path"), eval_split,
         doc="the held-out split exists apart from the training data (not one file read twice)"),
    Rule("data.tags", ("data.tags",), data_tags,
         doc="data.tags are two pairs [open, close] of four different, non-empty tags"),
    Rule("data.tags_warmup", ("data.tags", "model.warmup"), warmup_tags,
         doc="a locally warmed-up model (model=tiny) learned the default tags only (warning)"),
]
